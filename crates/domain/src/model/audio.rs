//! What the gateway can tell about audio itself: a WAV file's duration (from its header), and
//! the estimate used for other formats. Transcriptions are billed by audio seconds.

/// Bytes a second of compressed audio is assumed to take when its real duration cannot be
/// read (128 kbit/s, a common MP3 rate). Only estimates use it, marked as such.
pub const ASSUMED_BYTES_PER_SECOND: u64 = 16_000;

/// The duration of a WAV file in seconds, from its start (`head`, which must hold the `data`
/// chunk's header) and its whole length; `None` when it is not a PCM-style RIFF/WAVE file.
pub fn wav_seconds(head: &[u8], total_len: u64) -> Option<f64> {
    if head.len() < 12 || &head[..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let u32_at = |at: usize| -> Option<u32> {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut at = 12usize;
    let mut byte_rate = None;
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let size = u32_at(at + 4)?;
        if id == b"fmt " {
            byte_rate = u32_at(at + 16);
        } else if id == b"data" {
            let rate = byte_rate.filter(|r| *r > 0)?;
            let available = total_len.saturating_sub((at + 8) as u64);
            // Streamed WAV writers leave the size at its maximum.
            let len = if size == u32::MAX {
                available
            } else {
                u64::from(size).min(available)
            };
            #[allow(clippy::cast_precision_loss)]
            return Some(len as f64 / f64::from(rate));
        }
        let size = usize::try_from(size).ok()?;
        at = at.checked_add(8 + size + (size & 1))?;
    }
    None
}

/// Whole seconds, rounded up (at least one): what a transcription is billed on.
pub fn billed_seconds(seconds: f64) -> u32 {
    if !seconds.is_finite() || seconds <= 0.0 {
        return 1;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = seconds.ceil().min(f64::from(u32::MAX)) as u32;
    whole.max(1)
}

/// The seconds an upload of `len` bytes is assumed to last when its duration cannot be read.
pub fn assumed_seconds(len: u64) -> u32 {
    u32::try_from(len.div_ceil(ASSUMED_BYTES_PER_SECOND).max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, data_len: u32) -> Vec<u8> {
        let mut h = b"RIFF".to_vec();
        h.extend_from_slice(&(data_len + 36).to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate * 2).to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data_len.to_le_bytes());
        h
    }

    #[test]
    fn a_wav_header_gives_the_duration_and_anything_else_none() {
        let head = wav(16_000, 48_000);
        assert_eq!(wav_seconds(&head, 44 + 48_000), Some(1.5));
        // Truncated upload: only what arrived counts.
        assert_eq!(wav_seconds(&head, 44 + 32_000), Some(1.0));
        assert_eq!(wav_seconds(b"ID3\x04rest of an mp3", 1000), None);
        assert_eq!(wav_seconds(&head[..30], 1000), None);
    }

    #[test]
    fn billing_rounds_up_to_whole_seconds() {
        assert_eq!(billed_seconds(1.01), 2);
        assert_eq!(billed_seconds(0.0), 1);
        assert_eq!(billed_seconds(f64::NAN), 1);
        assert_eq!(assumed_seconds(16_001), 2);
        assert_eq!(assumed_seconds(0), 1);
    }
}

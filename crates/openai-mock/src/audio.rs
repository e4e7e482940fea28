//! The deterministic "models" behind the audio routes, router-sim's, so answers compare across
//! the two and tests can predict every byte.
//!
//! - Speech lasts 60 ms per input character divided by `speed` (at least 200 ms). `wav` is a
//!   valid RIFF/WAVE file of silence (24 kHz, mono, 16-bit), `pcm` the same samples without
//!   the header; the compressed formats are 16 bytes per ms (128 kbit/s) of zeros behind their
//!   magic number (`ID3` + an MPEG frame sync for mp3, `OggS` for opus, an ADTS sync for aac,
//!   `fLaC`). None of it plays as sound; it only has the right shape and length.
//! - A transcript says what was heard: `Transcribed audio of 1.50 seconds.` for a WAV upload
//!   (its duration from its header), `Transcribed 12345 bytes of audio.` otherwise, with a
//!   duration of one second per 16,000 bytes (128 kbit/s).

/// Speech formats, as OpenAI names them; the first is the default.
pub(crate) const SPEECH_FORMATS: [&str; 6] = ["mp3", "opus", "aac", "flac", "wav", "pcm"];

/// The `Content-Type` OpenAI labels each speech format with.
pub(crate) fn speech_content_type(format: &str) -> &'static str {
    match format {
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        _ => "audio/mpeg",
    }
}

/// OpenAI's speech sample rate (its `pcm` is 24 kHz, 16-bit, mono).
pub(crate) const SPEECH_RATE: u32 = 24_000;

/// How long speech of `input` at `speed` lasts, in milliseconds.
pub(crate) fn speech_ms(input: &str, speed: f64) -> u64 {
    #[allow(clippy::cast_precision_loss)]
    let chars = input.chars().count() as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (chars * 60.0 / speed).round() as u64;
    ms.max(200)
}

/// Speech for `input` at `speed` in `format` (one of [`SPEECH_FORMATS`]).
pub(crate) fn speech(input: &str, speed: f64, format: &str) -> Vec<u8> {
    let ms = speech_ms(input, speed);
    let pcm_len = usize::try_from(ms * u64::from(SPEECH_RATE) * 2 / 1000).unwrap_or(0);
    let packed_len = usize::try_from(ms * 16).unwrap_or(0);
    match format {
        "wav" => {
            let mut out = wav_header(SPEECH_RATE, u32::try_from(pcm_len).unwrap_or(u32::MAX));
            out.resize(out.len() + pcm_len, 0);
            out
        }
        "pcm" => vec![0; pcm_len],
        other => {
            let magic: &[u8] = match other {
                "opus" => b"OggS\x00\x02",
                "aac" => b"\xFF\xF1\x50\x80",
                "flac" => b"fLaC",
                _ => b"ID3\x04\x00\x00\x00\x00\x00\x00\xFF\xFB\x90\x64",
            };
            let mut out = magic.to_vec();
            out.resize(packed_len.max(magic.len()), 0);
            out
        }
    }
}

/// A canonical 44-byte WAV header for mono 16-bit PCM at `rate` Hz, `data_len` bytes of
/// samples following.
pub(crate) fn wav_header(rate: u32, data_len: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // mono
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * 2).to_le_bytes()); // byte rate
    h.extend_from_slice(&2u16.to_le_bytes()); // block align
    h.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// The duration of a WAV file in seconds: walks its RIFF chunks for the `fmt ` byte rate and
/// the `data` length. `head` is the start of the file (it must reach the `data` chunk's
/// header), `total_len` the whole file's length, which bounds a `data` length that claims
/// more (or `0xFFFFFFFF`, a streamed WAV's "unknown"). `None` when it is not a WAV file.
pub(crate) fn wav_seconds(head: &[u8], total_len: u64) -> Option<f64> {
    if head.len() < 12 || &head[..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let u32_at = |at: usize| -> Option<u32> {
        head.get(at..at.checked_add(4)?)
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
            let available = total_len.saturating_sub(at as u64 + 8);
            let len = if size == u32::MAX {
                available
            } else {
                u64::from(size).min(available)
            };
            #[allow(clippy::cast_precision_loss)]
            return Some(len as f64 / f64::from(rate));
        }
        // Chunks are padded to an even length.
        let size = usize::try_from(size).ok()?;
        at = at
            .checked_add(8)?
            .checked_add(size)?
            .checked_add(size & 1)?;
    }
    None
}

/// What was heard in an upload: its transcript and duration in seconds.
pub(crate) fn transcript(head: &[u8], total_len: u64) -> (String, f64) {
    match wav_seconds(head, total_len) {
        Some(secs) => (format!("Transcribed audio of {secs:.2} seconds."), secs),
        #[allow(clippy::cast_precision_loss)]
        None => (
            format!("Transcribed {total_len} bytes of audio."),
            total_len as f64 / 16_000.0,
        ),
    }
}

/// `HH:MM:SS<sep>mmm`, as SRT (`,`) and WebVTT (`.`) write times.
pub(crate) fn timestamp(secs: f64, sep: char) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (secs * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip() {
        let wav = speech("hello world", 1.0, "wav");
        assert_eq!(wav.len(), 44 + 660 * 48);
        let secs = wav_seconds(&wav[..64], wav.len() as u64).unwrap();
        assert!((secs - 0.66).abs() < 1e-9, "{secs}");
        assert_eq!(wav_seconds(b"ID3\x04", 100), None);
        assert_eq!(
            transcript(&wav, wav.len() as u64).0,
            "Transcribed audio of 0.66 seconds."
        );
        assert_eq!(
            transcript(b"xyz", 8000),
            ("Transcribed 8000 bytes of audio.".to_owned(), 0.5)
        );
    }

    #[test]
    fn wav_chunks_before_data_are_skipped() {
        let plain = wav_header(16_000, 32_000);
        // RIFF header and `fmt ` chunk, an odd-sized `LIST` chunk (padded), then `data`.
        let mut wav = plain[..36].to_vec();
        wav.extend_from_slice(b"LIST\x03\x00\x00\x00abc\x00");
        wav.extend_from_slice(&plain[36..]);
        wav.resize(wav.len() + 32_000, 0);
        let secs = wav_seconds(&wav, wav.len() as u64).unwrap();
        assert!((secs - 1.0).abs() < 1e-9, "{secs}");
        // A `data` length beyond the file is bounded by it.
        let secs = wav_seconds(&wav, wav.len() as u64 - 16_000).unwrap();
        assert!((secs - 0.5).abs() < 1e-9, "{secs}");
    }

    #[test]
    fn lengths_and_magic() {
        assert_eq!(speech_ms("", 1.0), 200);
        assert_eq!(speech_ms("abcdefghij", 2.0), 300);
        assert_eq!(speech("abcdefghij", 1.0, "pcm").len(), 600 * 48);
        let mp3 = speech("abcdefghij", 1.0, "mp3");
        assert_eq!((mp3.len(), &mp3[..3]), (9600, &b"ID3"[..]));
        assert_eq!(&speech("a", 1.0, "opus")[..4], b"OggS");
        assert_eq!(&speech("a", 1.0, "aac")[..2], b"\xFF\xF1");
        assert_eq!(&speech("a", 1.0, "flac")[..4], b"fLaC");
        assert_eq!(timestamp(3661.5, ','), "01:01:01,500");
    }
}

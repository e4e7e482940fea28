//! The deterministic "models" behind the non-chat routes: embedding vectors, speech audio and
//! transcripts, so tests can predict every byte.
//!
//! - An embedding is a unit vector derived from a hash of its input (a string, or the decimal
//!   token ids of a token array joined by commas): equal inputs give equal vectors. Every component
//!   is at least 1/256 of the vector's norm in size, so Go prints each as a plain decimal.
//!   `prompt_tokens` counts whitespace-separated words (a token array counts its ids), like chat.
//! - Speech lasts 60 ms per input character divided by `speed` (at least 200 ms). `wav` is a
//!   valid RIFF/WAVE file of silence (24 kHz, mono, 16-bit), `pcm` the same samples without the
//!   header; the compressed formats are 16 bytes per ms (128 kbit/s) of zeros behind their magic
//!   number (`ID3` + an MPEG frame sync for mp3, `OggS` for opus, an ADTS sync for aac, `fLaC`).
//! - A transcript says what was heard: `Transcribed audio of 1.50 seconds.` for a WAV upload
//!   (its duration from its header), `Transcribed 12345 bytes of audio.` otherwise, with a
//!   duration of one second per 16,000 bytes (128 kbit/s).

use serde::{Serialize, Serializer};

use crate::ids::fnv1a;

/// A `float32` as Go's `encoding/json` writes it: integral values without a fraction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GoF32(pub f32);

impl Serialize for GoF32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 1e9 {
            #[allow(clippy::cast_possible_truncation)]
            return s.serialize_i64(self.0 as i64);
        }
        s.serialize_f32(self.0)
    }
}

/// A `float64` as Go writes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GoF64(pub f64);

impl Serialize for GoF64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 1e15 {
            #[allow(clippy::cast_possible_truncation)]
            return s.serialize_i64(self.0 as i64);
        }
        s.serialize_f64(self.0)
    }
}

/// The simulator's token: a whitespace-separated word.
pub(crate) fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// A unit vector of `dims` components derived from `seed_text`.
pub(crate) fn embedding(seed_text: &str, dims: usize) -> Vec<GoF32> {
    let mut state = fnv1a(seed_text.as_bytes());
    let raw: Vec<f64> = (0..dims)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let bits = state >> 40; // 24 bits
            #[allow(clippy::cast_precision_loss)]
            let magnitude = 0.25 + 0.75 * (bits as f64 / f64::from(1u32 << 24));
            if state & (1 << 20) == 0 {
                magnitude
            } else {
                -magnitude
            }
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    #[allow(clippy::cast_possible_truncation)]
    raw.iter().map(|x| GoF32((x / norm) as f32)).collect()
}

/// Speech formats the simulated backend produces, as OpenAI names them.
pub(crate) const SPEECH_FORMATS: [&str; 6] = ["mp3", "opus", "aac", "flac", "wav", "pcm"];

/// The content type the node labels speech with (`proxyapi/controller_http.go:1670-1686`):
/// by the request's `response_format`, `audio/mpeg` for anything it does not know.
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

const SPEECH_RATE: u32 = 24_000;

/// Speech for `input` at `speed` in `format` (one of [`SPEECH_FORMATS`]).
pub(crate) fn speech(input: &str, speed: f64, format: &str) -> Vec<u8> {
    let chars = input.chars().count() as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = ((chars * 60.0 / speed).round() as u64).max(200);
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

/// A canonical 44-byte WAV header for mono 16-bit PCM.
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

/// The duration of a WAV file in seconds, from the start of the file (`head`, which must hold
/// its `data` chunk header) and its total length; `None` when it is not a WAV file.
pub(crate) fn wav_seconds(head: &[u8], total_len: u64) -> Option<f64> {
    if head.len() < 12 || &head[..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let u32_at = |at: usize| -> Option<u32> {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let size = u32_at(at + 4)?;
        if id == b"fmt " {
            byte_rate = u32_at(at + 16);
        } else if id == b"data" {
            let rate = byte_rate.filter(|r| *r > 0)?;
            let body_start = (at + 8) as u64;
            let available = total_len.saturating_sub(body_start);
            let len = if size == u32::MAX {
                available
            } else {
                u64::from(size).min(available)
            };
            #[allow(clippy::cast_precision_loss)]
            return Some(len as f64 / f64::from(rate));
        }
        at += 8 + usize::try_from(size).ok()? + (size as usize & 1);
    }
    None
}

/// What the simulated backend heard in an upload: its transcript and duration (seconds).
pub(crate) fn transcript(head: &[u8], total_len: u64, from_url: bool) -> (String, f64) {
    if from_url {
        return ("Transcribed audio from a presigned URL.".to_owned(), 0.0);
    }
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
    fn embeddings_are_unit_and_deterministic() {
        let a = embedding("hello", 16);
        assert_eq!(a, embedding("hello", 16));
        assert_ne!(a, embedding("hellp", 16));
        let norm: f64 = a.iter().map(|x| f64::from(x.0) * f64::from(x.0)).sum();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert!(embedding("x", 4096).iter().all(|x| x.0.abs() > 1e-3));
    }

    #[test]
    fn wav_round_trip() {
        let wav = speech("hello world", 1.0, "wav");
        assert_eq!(&wav[..4], b"RIFF");
        let secs = wav_seconds(&wav[..64], wav.len() as u64).unwrap();
        assert!((secs - 0.66).abs() < 1e-9, "{secs}");
        assert_eq!(wav_seconds(b"ID3\x04", 100), None);
        assert_eq!(
            transcript(&wav, wav.len() as u64, false).0,
            "Transcribed audio of 0.66 seconds."
        );
    }

    #[test]
    fn go_numbers() {
        assert_eq!(serde_json::to_string(&GoF64(1.0)).unwrap(), "1");
        assert_eq!(serde_json::to_string(&GoF64(1.5)).unwrap(), "1.5");
        assert_eq!(serde_json::to_string(&GoF32(0.1)).unwrap(), "0.1");
        assert_eq!(timestamp(3661.5, ','), "01:01:01,500");
    }
}

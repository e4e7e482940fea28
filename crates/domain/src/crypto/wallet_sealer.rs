use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::model::{SealedWalletKey, UserId, WalletPrivateKey};

/// Format version of a sealed key; stored as its first byte so a future key rotation can tell
/// old ciphertexts from new ones.
const VERSION: u8 = 1;

/// Seals wallet private keys with AES-256-GCM under the master key. Every ciphertext has a fresh
/// random nonce, and its associated data names the owner, so a ciphertext copied into another
/// user's row does not decrypt.
pub struct WalletSealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for WalletSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalletSealer(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Wrong owner, wrong master key, or tampered bytes: GCM cannot tell them apart.
    #[error("the sealed wallet key failed authentication")]
    Authentication,
    #[error("the sealed wallet key has an unknown format")]
    Format,
}

impl WalletSealer {
    pub const KEY_LEN: usize = 32;

    /// # Errors
    /// When the master key is not exactly 32 bytes.
    pub fn new(master_key: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            master_key.len() == Self::KEY_LEN,
            "the wallet master key must be exactly {} bytes",
            Self::KEY_LEN
        );
        let unbound = UnboundKey::new(&AES_256_GCM, master_key)
            .map_err(|_| anyhow::anyhow!("invalid AES-256 key"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    fn aad(owner: UserId) -> String {
        format!("wallet:v{VERSION}:{}", owner.0)
    }

    /// # Errors
    /// Only if the system's random source fails.
    pub fn seal(&self, owner: UserId, key: &WalletPrivateKey) -> anyhow::Result<SealedWalletKey> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
        let mut in_out = key.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(owner).as_bytes()),
                &mut in_out,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        Ok(SealedWalletKey(sealed))
    }

    pub fn open(
        &self,
        owner: UserId,
        sealed: &SealedWalletKey,
    ) -> Result<WalletPrivateKey, OpenError> {
        let bytes = &sealed.0;
        if bytes.len() < 1 + NONCE_LEN || bytes[0] != VERSION {
            return Err(OpenError::Format);
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[1..=NONCE_LEN])
            .map_err(|_| OpenError::Format)?;
        let mut in_out = bytes[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(owner).as_bytes()), &mut in_out)
            .map_err(|_| OpenError::Authentication)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| OpenError::Format)?;
        WalletPrivateKey::parse(text).map_err(|_| OpenError::Format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> WalletSealer {
        WalletSealer::new(&[42u8; 32]).unwrap()
    }

    fn key() -> WalletPrivateKey {
        WalletPrivateKey::parse(format!("0x{}", "ab12".repeat(16))).unwrap()
    }

    #[test]
    fn the_master_key_must_be_32_bytes() {
        assert!(WalletSealer::new(&[0u8; 31]).is_err());
        assert!(WalletSealer::new(&[0u8; 33]).is_err());
    }

    #[test]
    fn seal_then_open_round_trips_and_never_repeats_a_ciphertext() {
        let s = sealer();
        let a = s.seal(UserId(1), &key()).unwrap();
        let b = s.seal(UserId(1), &key()).unwrap();
        assert_ne!(a, b, "random nonces make every ciphertext different");
        assert_eq!(s.open(UserId(1), &a).unwrap().expose(), key().expose());
        assert!(!a.0.windows(8).any(|w| w == &key().expose().as_bytes()[..8]));
    }

    #[test]
    fn a_ciphertext_moved_to_another_owner_does_not_open() {
        let s = sealer();
        let sealed = s.seal(UserId(1), &key()).unwrap();
        assert_eq!(
            s.open(UserId(2), &sealed).err(),
            Some(OpenError::Authentication)
        );
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let s = sealer();
        let sealed = s.seal(UserId(9), &key()).unwrap();
        // Skip byte 0 (the version): flipping it is a format error, tested below.
        for i in 1..sealed.0.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad.0[i] ^= 1 << bit;
                assert!(s.open(UserId(9), &bad).is_err(), "byte {i} bit {bit}");
            }
        }
        let mut bad = sealed;
        bad.0[0] = 2;
        assert_eq!(s.open(UserId(9), &bad).err(), Some(OpenError::Format));
    }

    #[test]
    fn another_master_key_cannot_open() {
        let sealed = sealer().seal(UserId(1), &key()).unwrap();
        let other = WalletSealer::new(&[43u8; 32]).unwrap();
        assert_eq!(
            other.open(UserId(1), &sealed).err(),
            Some(OpenError::Authentication)
        );
    }
}

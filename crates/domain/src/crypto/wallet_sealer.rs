use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

use crate::model::{SealedWalletKey, UserId, WalletPrivateKey};

/// Format version of a sealed key, its first byte.
const VERSION: u8 = 1;
/// Which master key sealed it: the first bytes of the key's SHA-256, so keys need no numbering
/// and the configuration order of old keys does not matter.
const KEY_ID_LEN: usize = 4;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

type KeyId = [u8; KEY_ID_LEN];

/// Seals wallet private keys with AES-256-GCM: `version ‖ key id ‖ nonce ‖ ciphertext+tag`.
/// Every ciphertext has a fresh random nonce, and its associated data names the owner, so a
/// ciphertext copied into another user's row does not decrypt.
///
/// The keyring has one current master key, used for every new seal, and any number of previous
/// ones, kept only to open what they sealed until `reseal-wallet-keys` has moved those rows to
/// the current key. A row sealed under a key that is no longer configured fails loudly
/// ([`OpenError::UnknownKey`]).
pub struct WalletSealer {
    current: KeyId,
    keys: Vec<(KeyId, LessSafeKey)>,
    rng: SystemRandom,
}

impl std::fmt::Debug for WalletSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WalletSealer({} keys)", self.keys.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Wrong owner or tampered bytes: GCM cannot tell them apart.
    #[error("the sealed wallet key failed authentication")]
    Authentication,
    /// Sealed under a master key that is not configured (any more).
    #[error("the sealed wallet key was sealed under a master key that is not configured")]
    UnknownKey,
    #[error("the sealed wallet key has an unknown format")]
    Format,
}

fn key_id(master_key: &[u8]) -> KeyId {
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest(&SHA256, master_key).as_ref()[..KEY_ID_LEN]);
    id
}

impl WalletSealer {
    pub const KEY_LEN: usize = 32;

    /// # Errors
    /// When a master key is not exactly 32 bytes.
    pub fn new(master_key: &[u8]) -> anyhow::Result<Self> {
        Self::with_previous(master_key, &[])
    }

    /// A keyring: `current` seals, `previous` keys only open.
    ///
    /// # Errors
    /// When a key is not exactly 32 bytes.
    pub fn with_previous(current: &[u8], previous: &[Vec<u8>]) -> anyhow::Result<Self> {
        let mut keys = Vec::with_capacity(1 + previous.len());
        for key in std::iter::once(current).chain(previous.iter().map(Vec::as_slice)) {
            anyhow::ensure!(
                key.len() == Self::KEY_LEN,
                "a wallet master key must be exactly {} bytes",
                Self::KEY_LEN
            );
            let unbound = UnboundKey::new(&AES_256_GCM, key)
                .map_err(|_| anyhow::anyhow!("invalid AES-256 key"))?;
            keys.push((key_id(key), LessSafeKey::new(unbound)));
        }
        Ok(Self {
            current: key_id(current),
            keys,
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
        let (_, current) = &self.keys[0];
        current
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(owner).as_bytes()),
                &mut in_out,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut sealed = Vec::with_capacity(HEADER_LEN + in_out.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&self.current);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        Ok(SealedWalletKey(sealed))
    }

    /// Whether `sealed` is under the current master key (nothing to reseal).
    pub fn is_current(&self, sealed: &SealedWalletKey) -> bool {
        sealed.0.len() > HEADER_LEN
            && sealed.0[0] == VERSION
            && sealed.0[1..=KEY_ID_LEN] == self.current
    }

    pub fn open(
        &self,
        owner: UserId,
        sealed: &SealedWalletKey,
    ) -> Result<WalletPrivateKey, OpenError> {
        let bytes = &sealed.0;
        if bytes.len() < HEADER_LEN || bytes[0] != VERSION {
            return Err(OpenError::Format);
        }
        let id = &bytes[1..=KEY_ID_LEN];
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or(OpenError::UnknownKey)?;
        let nonce = Nonce::try_assume_unique_for_key(&bytes[1 + KEY_ID_LEN..HEADER_LEN])
            .map_err(|_| OpenError::Format)?;
        let mut in_out = bytes[HEADER_LEN..].to_vec();
        let plain = key
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
        // Skip byte 0 (the version): flipping it is a format error, tested below. Flipping a
        // key-id byte names an unknown key; any other byte fails authentication.
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
            Some(OpenError::UnknownKey)
        );
    }

    #[test]
    fn after_a_rotation_old_seals_open_and_new_seals_use_the_new_key() {
        let old = sealer();
        let sealed_before = old.seal(UserId(5), &key()).unwrap();
        let rotated = WalletSealer::with_previous(&[77u8; 32], &[vec![42u8; 32]]).unwrap();
        assert!(!rotated.is_current(&sealed_before));
        assert_eq!(
            rotated.open(UserId(5), &sealed_before).unwrap().expose(),
            key().expose()
        );

        let sealed_after = rotated.seal(UserId(5), &key()).unwrap();
        assert!(rotated.is_current(&sealed_after));
        // The new seal does not open with the old key alone…
        assert_eq!(
            old.open(UserId(5), &sealed_after).err(),
            Some(OpenError::UnknownKey)
        );
        // …and once the old key is retired, its seals fail loudly.
        let retired = WalletSealer::new(&[77u8; 32]).unwrap();
        assert_eq!(
            retired.open(UserId(5), &sealed_before).err(),
            Some(OpenError::UnknownKey)
        );
        assert!(WalletSealer::with_previous(&[77u8; 32], &[vec![1u8; 31]]).is_err());
    }
}

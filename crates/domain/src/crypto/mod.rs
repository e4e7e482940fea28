//! Keyed primitives over `ring`: API-key digests and wallet-key sealing. Both are fast (well
//! under a microsecond) and run inline.

mod api_key_hasher;
mod wallet_sealer;

pub use api_key_hasher::ApiKeyHasher;
pub use wallet_sealer::{OpenError, WalletSealer};

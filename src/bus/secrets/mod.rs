//! Provider keys at rest (`ai_secrets`): sealed with the fleet's master key (`seal`), followed
//! by every worker (`keyring`) so a rotated key is used without a restart.

pub mod keyring;
pub mod seal;

pub use keyring::Keyring;
pub use seal::MasterKey;

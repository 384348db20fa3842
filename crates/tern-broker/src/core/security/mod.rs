//! Who may connect and what they may do, from the files mosquitto's
//! operators already have: the password file (`mosquitto_passwd`) and the
//! ACL file. Both are parsed from text (the shell reads the files) and
//! checked without I/O.

mod acl_file;
mod argon2id;
mod password_file;
pub mod scram;

pub use acl_file::{Access, AclFile, AclFileError};
pub use argon2id::{MOSQUITTO_MEMORY_KIB, MOSQUITTO_PASSES, MOSQUITTO_SALT_LEN};
pub use password_file::{
    DEFAULT_ITERATIONS, PasswordFile, PasswordFileError, PasswordHash, SALT_LEN, SCRAM_SALT_LEN,
};

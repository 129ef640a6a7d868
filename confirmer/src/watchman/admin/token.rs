//! The admin token: a random secret in a file only its owner can read, created by the watchman
//! at its first start. Whoever can read it is this watchman's operator as far as approvals go,
//! so a file others could read is refused, by the watchman and by `bridgectl admin` alike.

use std::io::Write;
use std::path::Path;

use super::AdminError;

/// Bytes of randomness in a token (256 bits, shown as 64 hex digits).
const TOKEN_BYTES: usize = 32;

/// The operator's admin token. `Debug` never shows it.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

impl AdminToken {
    /// The token in `file`, made (0600) if the file does not exist yet.
    pub fn load_or_create(file: &Path) -> Result<Self, AdminError> {
        if !file.exists() {
            let mut bytes = [0u8; TOKEN_BYTES];
            getrandom::fill(&mut bytes).map_err(|e| AdminError::Token(format!("no randomness for a token: {e}")))?;
            write_private(file, format!("{}\n", hex::encode(bytes)).as_bytes())
                .map_err(|e| AdminError::Token(format!("cannot create {}: {e}", file.display())))?;
            tracing::info!(file = %file.display(), "created the admin token");
        }
        Self::read(file)
    }

    /// The token in `file`; refused if anyone but its owner may read or write it.
    pub fn read(file: &Path) -> Result<Self, AdminError> {
        check_private(file)?;
        let text = std::fs::read_to_string(file)
            .map_err(|e| AdminError::Token(format!("cannot read {}: {e}", file.display())))?;
        let token = text.trim();
        if token.len() < 32 {
            return Err(AdminError::Token(format!("{} holds no admin token (too short)", file.display())));
        }
        Ok(AdminToken(token.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, compared in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Refuses a file whose mode lets its group or others in.
fn check_private(file: &Path) -> Result<(), AdminError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(file).map_err(|e| AdminError::Token(format!("cannot read {}: {e}", file.display())))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AdminError::Token(format!(
                "{} is readable by others (mode {mode:o}): run `chmod 600 {}`",
                file.display(),
                file.display()
            )));
        }
    }
    Ok(())
}

/// Writes `bytes` to a new file only its owner can read and write.
pub(crate) fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(file)?;
    // An existing file keeps its mode through `open`: make sure it is owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    out.write_all(bytes)?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_is_made_once_owner_only_and_a_wider_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.token");
        let made = AdminToken::load_or_create(&file).unwrap();
        assert_eq!(made.as_str().len(), 64);
        let again = AdminToken::load_or_create(&file).unwrap();
        assert!(made.matches(again.as_str()), "a second start keeps the token");
        assert!(!made.matches("") && !made.matches(&"0".repeat(64)));
        assert!(!format!("{made:?}").contains(made.as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let refused = AdminToken::read(&file).unwrap_err().to_string();
            assert!(refused.contains("readable by others") && refused.contains("chmod 600"), "{refused}");
            assert!(AdminToken::load_or_create(&file).is_err(), "the watchman refuses it too");
        }
    }
}

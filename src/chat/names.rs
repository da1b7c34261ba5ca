//! Chat name rules, sans-IO: what a name may look like, which are reserved, and generated
//! names for viewers who bring none. Uniqueness is compared case-insensitively.

/// Longest name in characters.
pub const MAX_NAME_LEN: usize = 24;
/// Names nobody may take (compared case-insensitively): they would impersonate the service.
pub const RESERVED: &[&str] = &[
    "admin",
    "administrator",
    "moderator",
    "mod",
    "system",
    "server",
    "ferrocast",
    "root",
    "staff",
];
/// Prefix of generated names; reserved for them, so a chosen name never collides with one later.
pub const GENERATED_PREFIX: &str = "guest-";

/// Why a requested name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Invalid,
    Reserved,
}

impl NameError {
    pub fn code(self) -> &'static str {
        match self {
            NameError::Invalid => "name_invalid",
            NameError::Reserved => "name_reserved",
        }
    }

    pub fn reason(self) -> String {
        match self {
            NameError::Invalid => format!(
                "names are 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, `_`, `-` and `.`"
            ),
            NameError::Reserved => "that name is reserved".to_string(),
        }
    }
}

/// The form names are compared in.
pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Checks a name a viewer asked for.
pub fn check(name: &str) -> Result<(), NameError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars {
        return Err(NameError::Invalid);
    }
    let k = key(name);
    if RESERVED.contains(&k.as_str()) || k.starts_with(GENERATED_PREFIX) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// A generated name from a counter; callers retry with the next counter if it is taken.
/// The counter is scrambled so consecutive viewers do not get consecutive names.
pub fn generated(counter: u64) -> String {
    // An odd multiplier is a bijection on u32: distinct counters (mod 2^32), distinct names.
    let x = (counter as u32).wrapping_mul(0x9E37_79B9);
    format!("{GENERATED_PREFIX}{x:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for n in ["alice", "Bob_2", "x", "a.b-c", "abcdefghijklmnopqrstuvwx"] {
            assert_eq!(check(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn malformed_names_are_invalid() {
        for n in [
            "",
            "has space",
            "abcdefghijklmnopqrstuvwxy",
            "<b>",
            "é",
            "a/b",
            "a\"b",
        ] {
            assert_eq!(check(n), Err(NameError::Invalid), "{n}");
        }
    }

    #[test]
    fn reserved_names_are_refused_in_any_case() {
        for n in [
            "admin",
            "ADMIN",
            "Moderator",
            "System",
            "guest-123456",
            "Guest-x",
        ] {
            assert_eq!(check(n), Err(NameError::Reserved), "{n}");
        }
    }

    #[test]
    fn generated_names_are_distinct_and_shaped() {
        let names: std::collections::HashSet<String> = (0..10_000).map(generated).collect();
        assert_eq!(names.len(), 10_000);
        for n in names.iter().take(10) {
            assert!(n.starts_with(GENERATED_PREFIX) && n.len() == GENERATED_PREFIX.len() + 8);
        }
    }

    #[test]
    fn keys_compare_case_insensitively() {
        assert_eq!(key("Alice"), key("aLICE"));
    }
}

//! Passwords kept out of sight: a [`Password`] that never prints itself, and [`redact`], which
//! hides the password of every URL (`scheme://user:password@host`) and every `password=` pair in a
//! text before it reaches a log, an error or an admin page.

use std::fmt;
use std::path::Path;

/// A store's password. `Debug` and `Display` print `***`; only [`Password::expose`] gives it out,
/// at the one place that hands it to a driver.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The first line of `path` (as Secrets Manager values mounted as files are written), without
    /// its line ending. The error names the file, never its content.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let line = text.lines().next().unwrap_or("");
        Ok(Password(line.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

const HIDDEN: &str = "***";

/// `text` with every URL's password (`scheme://user:password@...` becomes `scheme://user:***@...`)
/// and every `password=value` (key=value connection strings, URL queries) replaced by `***`.
/// Everything else is kept, so the result still says which store was meant.
pub fn redact(text: &str) -> String {
    redact_pairs(&redact_userinfo(text))
}

/// `scheme://user:password@` → `scheme://user:***@`, for every URL in `text`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first '/', '?', '#' or white space; its user info at the last '@'.
        let end = after.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon + 1]);
                        out.push_str(HIDDEN);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `password=value` (any case, also `sslpassword=`) → `password=***`; the value ends at white space,
/// '&' or ';', or is quoted with `'`.
fn redact_pairs(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let key_end = from + found + "password".len();
        let after_key = &text[key_end..];
        let spaces = after_key.len() - after_key.trim_start().len();
        let mut value_start = key_end + spaces;
        if !text[value_start..].starts_with('=') {
            from = key_end;
            continue;
        }
        value_start += 1;
        value_start += text[value_start..].len() - text[value_start..].trim_start().len();
        let value = &text[value_start..];
        let value_len = if let Some(quoted) = value.strip_prefix('\'') {
            // A quoted value ends at the next unescaped quote.
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = i + 1;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            1 + end.min(quoted.len())
        } else {
            value.find(|c: char| c.is_whitespace() || c == '&' || c == ';').unwrap_or(value.len())
        };
        out.push_str(&text[copied..value_start]);
        out.push_str(HIDDEN);
        copied = value_start + value_len;
        from = copied;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_keeps_its_user_and_host_and_loses_its_password() {
        assert_eq!(
            redact("postgres://app:s3cr%40t@db.example.com:5432/cafe"),
            "postgres://app:***@db.example.com:5432/cafe"
        );
        assert_eq!(redact("rediss://:token@cache:6379/0"), "rediss://:***@cache:6379/0");
        assert_eq!(
            redact("mongodb://cafe:pw@docdb:27017/?tls=true&replicaSet=rs0"),
            "mongodb://cafe:***@docdb:27017/?tls=true&replicaSet=rs0"
        );
    }

    #[test]
    fn a_password_with_an_at_sign_is_hidden_whole() {
        assert_eq!(redact("postgres://app:p@ss@db/cafe"), "postgres://app:***@db/cafe");
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for url in ["postgres://postgres@127.0.0.1:5432/postgres", "redis://127.0.0.1:6379", "http://host/path?q=1"] {
            assert_eq!(redact(url), url);
        }
    }

    #[test]
    fn every_url_in_a_message_is_redacted() {
        assert_eq!(
            redact("cannot reach postgres://a:b@h1/db nor redis://c:d@h2 (twice: postgres://a:b@h1/db)"),
            "cannot reach postgres://a:***@h1/db nor redis://c:***@h2 (twice: postgres://a:***@h1/db)"
        );
    }

    #[test]
    fn key_value_passwords_and_query_passwords_are_hidden() {
        assert_eq!(
            redact("host=db user=app password=hunter2 dbname=cafe"),
            "host=db user=app password=*** dbname=cafe"
        );
        assert_eq!(redact("host=db password='two words' port=5432"), "host=db password=*** port=5432");
        assert_eq!(redact("host=db PASSWORD = x"), "host=db PASSWORD = ***");
        assert_eq!(
            redact("postgres://db/cafe?user=app&password=pw&sslmode=require"),
            "postgres://db/cafe?user=app&password=***&sslmode=require"
        );
        assert_eq!(redact("sslpassword=k"), "sslpassword=***");
    }

    #[test]
    fn text_that_only_mentions_passwords_is_unchanged() {
        for text in ["password authentication failed for user \"app\"", "no password", "password"] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn a_password_prints_as_stars() {
        let password = Password::new("hunter2");
        assert_eq!(format!("{password} {password:?}"), "*** Password(***)");
        assert_eq!(password.expose(), "hunter2");
    }

    #[test]
    fn a_password_file_gives_its_first_line() {
        let path = std::env::temp_dir().join(format!("cc-password-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, "from-secrets-manager\n").unwrap();
        assert_eq!(Password::from_file(&path).unwrap().expose(), "from-secrets-manager");
        std::fs::remove_file(&path).unwrap();
    }
}

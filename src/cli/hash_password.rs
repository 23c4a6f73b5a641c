//! `corelay hash-password`: the hash forms of a password, for a `[[user]]`'s or an
//! `[[admin_user]]`'s `password` key, so that the configuration never holds the password.
//! The password is read from standard input (one line), never from the command line,
//! where other users could see it.

use std::io::BufRead;

use crate::protocol::credential::{native_form, sha2_crypt_form};

/// Reads one line and prints both forms, each as a ready `password = ...` line.
pub fn run(input: &mut dyn BufRead) -> Result<String, String> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err("empty password: type it on standard input (echo -n is not needed; one line is read)".into());
    }
    let native = native_form(password.as_bytes());
    let sha2 = toml::Value::String(sha2_crypt_form(password.as_bytes()));
    Ok(format!(
        "# auth = \"mysql_native_password\" (also [[admin_user]])\npassword = \"{native}\"\n\
         # auth = \"caching_sha2_password\" (a client's first login on each shard sends the password, over TLS or RSA)\npassword = {sha2}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::credential::Credential;

    #[test]
    fn both_forms_are_printed_and_read_back() {
        let out = run(&mut "s3cret\n".as_bytes()).unwrap();
        assert!(out.contains("password = \"*"), "{out}");
        for line in out.lines().filter(|l| l.starts_with("password")) {
            let value: toml::Value = toml::from_str(line).unwrap();
            let form = value["password"].as_str().unwrap();
            let c = Credential::parse(form);
            assert!(c.check_cleartext(b"s3cret").is_some(), "{form}");
            assert!(c.check_cleartext(b"s3cre").is_none());
        }
        assert!(run(&mut "\n".as_bytes()).is_err());
    }
}

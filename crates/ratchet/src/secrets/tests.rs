use super::*;
use serde_json::json;

#[test]
fn a_registered_secret_is_masked_in_every_form() {
    register("TEST_KEY_A", "sk-live-4f9a/b+c d").unwrap();
    for text in [
        "key sk-live-4f9a/b+c d here",
        "key sk-live-4f9a%2Fb%2Bc%20d here",
    ] {
        let out = redact(text);
        assert!(!out.contains("4f9a"), "{out}");
        assert!(out.contains(MASK), "{out}");
    }
    let mut v = json!({"a": ["x sk-live-4f9a/b+c d y"], "n": 3});
    redact_value(&mut v);
    assert_eq!(v, json!({"a": [format!("x {MASK} y")], "n": 3}));
}

#[test]
fn short_and_empty_secrets_are_not_registered_by_value() {
    assert!(register("SHORT", "abc").is_err());
    assert!(register("EMPTY", "  ").is_ok());
    assert_eq!(redact("abc is ordinary text"), "abc is ordinary text");
}

#[test]
fn secret_shapes_are_masked_without_registration() {
    let cases = [
        ("postgres://app:Unreg1stered@db:5432/x", "Unreg1stered"),
        (
            "postgres://app@db/x?sslmode=require&password=Qp9zz1&x=1",
            "Qp9zz1",
        ),
        ("host=db user=app password='Zz 9q 1' dbname=x", "Zz 9q 1"),
        ("host=db PASSWORD=Kk77aa dbname=x", "Kk77aa"),
        ("Authorization: Bearer tok-8812ab", "tok-8812ab"),
        (r#"{"api_key": "Jj2299xx"}"#, "Jj2299xx"),
        ("GET /v1?token=Tt5566yy HTTP/1.1", "Tt5566yy"),
    ];
    for (text, secret) in cases {
        let out = redact(text);
        assert!(!out.contains(secret), "{text} -> {out}");
        assert!(out.contains(MASK), "{text} -> {out}");
    }
    // Words that only look like keys stay.
    for text in [
        "max_tokens=5 tokens=7",
        "the password is required",
        "https://example.com/a@b",
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn embedded_passwords_are_found_in_every_connection_string_form() {
    assert_eq!(
        embedded_passwords("postgres://u:p%40ssw0rd@h/db"),
        vec!["p@ssw0rd"]
    );
    assert_eq!(
        embedded_passwords("postgres://u@h/db?password=s3cr3t!&sslmode=require"),
        vec!["s3cr3t!"]
    );
    assert_eq!(
        embedded_passwords("host=h user=u password='two words'"),
        vec!["two words"]
    );
    assert!(embedded_passwords("postgres://u@h/db").is_empty());
}

#[test]
fn secret_names_are_recognised() {
    for name in [
        "OPENAI_API_KEY",
        "PGPASSWORD",
        "RATCHET_ADMIN_TOKEN",
        "DATABASE_URL",
        "MY_SECRET",
        "CLIENT_SECRET_VALUE",
        "GITHUB_TOKEN",
        "RATCHET_STORE",
    ] {
        assert!(is_secret_name(name), "{name}");
    }
    for name in [
        "PATH",
        "HOME",
        "RATCHET_DB",
        "RATCHET_MODEL",
        "OPENAI_MAX_TOKENS",
        "KEYBOARD_LAYOUT",
        "RATCHET_IDENTITY_KEYS",
    ] {
        assert!(!is_secret_name(name), "{name}");
    }
}

#[test]
fn log_lines_are_redacted_before_they_are_written() {
    use std::io::Write;
    register("TEST_LOG_KEY", "log-secret-991").unwrap();
    let mut sink = Vec::new();
    {
        let mut line = RedactingLine::new(&mut sink);
        write!(line, "call failed: key=").unwrap();
        write!(line, "log-secret-991 status=500").unwrap();
    }
    let text = String::from_utf8(sink).unwrap();
    assert_eq!(text, format!("call failed: key={MASK} status=500"));
}

//! URLs with `user:password@` in them, made safe to print.
//!
//! An endpoint such as `http://USER:PASS@host:9000` puts a password where
//! every message that quotes the URL (validate, S3 errors, logs) would
//! print it. S3 never uses it (requests are signed with the access key),
//! so the loader drops the userinfo from the endpoint ([`split_userinfo`])
//! and [`mask_userinfo`] masks any that is left in a message.

/// `url` without its userinfo, and the userinfo (`user:password`) if any.
pub(crate) fn split_userinfo(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_string(), None);
    };
    let auth_start = scheme_end + 3;
    let rest = &url[auth_start..];
    let auth_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..auth_len].rfind('@') {
        Some(at) => (
            format!("{}{}", &url[..auth_start], &rest[at + 1..]),
            Some(rest[..at].to_string()),
        ),
        None => (url.to_string(), None),
    }
}

/// `text` with the userinfo of every `scheme://user:password@host` in it
/// replaced by `***`.
pub fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at a path, query, fragment, or anything that
        // cannot be in a URL (whitespace, quotes, brackets).
        let end = tail
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>' | ',' | ')' | ']' | '}'
                ) || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_split_off_and_masked() {
        assert_eq!(
            split_userinfo("http://u:p@h:9/x?y@z"),
            ("http://h:9/x?y@z".to_string(), Some("u:p".to_string()))
        );
        assert_eq!(split_userinfo("https://h").1, None);
        assert_eq!(split_userinfo("h@x").1, None);
        assert_eq!(
            mask_userinfo("url: http://USER:PASS@127.0.0.1:9/b/k, then https://h/a@b"),
            "url: http://***@127.0.0.1:9/b/k, then https://h/a@b"
        );
        assert_eq!(
            mask_userinfo("`http://a:b@c` and \"s3://x@y\""),
            "`http://***@c` and \"s3://***@y\""
        );
        assert_eq!(mask_userinfo("no url here: a@b"), "no url here: a@b");
    }
}

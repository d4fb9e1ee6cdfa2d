//! The check digits of Chinese identity numbers, so that a mistyped number is refused at
//! registration (SH-USR-06 "the identity information is correct") rather than discovered at
//! review.

/// Whether `id` is a well-formed 18-character resident identity number (GB 11643-1999): 17
/// digits, a plausible birth date, and the ISO 7064 MOD 11-2 check character (`0`-`9` or
/// `X`).
pub fn is_valid_national_id(id: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let bytes = id.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let digit = |i: usize| u32::from(bytes[i] - b'0');
    let month = digit(10) * 10 + digit(11);
    let day = digit(12) * 10 + digit(13);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    let sum: u32 = (0..17).map(|i| digit(i) * WEIGHTS[i]).sum();
    bytes[17].to_ascii_uppercase() == CHECK[(sum % 11) as usize]
}

/// Whether `code` is a well-formed unified social credit code (GB 32100-2015): 18
/// characters from the 31-character alphabet (no I, O, S, V, Z) with a MOD 31 check
/// character.
pub fn is_valid_credit_code(code: &str) -> bool {
    const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    let bytes = code.as_bytes();
    if bytes.len() != 18 {
        return false;
    }
    let mut values = [0u32; 18];
    for (i, b) in bytes.iter().enumerate() {
        match ALPHABET.iter().position(|a| *a == b.to_ascii_uppercase()) {
            Some(v) => values[i] = v as u32,
            None => return false,
        }
    }
    let sum: u32 = (0..17).map(|i| values[i] * WEIGHTS[i]).sum();
    let check = (31 - sum % 31) % 31;
    values[17] == check
}

/// A mainland mobile number: 11 digits, `1` then `3`-`9`. An optional `+86` prefix is allowed.
pub fn is_valid_mobile(phone: &str) -> bool {
    let digits = phone.strip_prefix("+86").unwrap_or(phone);
    let b = digits.as_bytes();
    b.len() == 11
        && b.iter().all(u8::is_ascii_digit)
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
}

/// An address the platform can mail: one `@`, a non-empty local part, a domain with a dot
/// and no spaces, at most 254 characters. Deliverability is proven by the verification code.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_id_check_character() {
        // The GB 11643 example number.
        assert!(is_valid_national_id("11010519491231002X"));
        assert!(is_valid_national_id("11010519491231002x"));
        assert!(!is_valid_national_id("110105194912310021"));
        assert!(!is_valid_national_id("11010519491331002X"), "month 13");
        assert!(!is_valid_national_id("1101051949123100"));
    }

    #[test]
    fn credit_code_check_character() {
        assert!(is_valid_credit_code("91350100M000100Y43"));
        assert!(!is_valid_credit_code("91350100M000100Y44"));
        assert!(
            !is_valid_credit_code("91350100M000100O43"),
            "O is not in the alphabet"
        );
    }

    #[test]
    fn contacts() {
        assert!(is_valid_mobile("13800138000"));
        assert!(is_valid_mobile("+8613800138000"));
        assert!(!is_valid_mobile("12800138000"));
        assert!(is_plausible_email("a@b.cn"));
        assert!(!is_plausible_email("a@b"));
        assert!(!is_plausible_email("a b@c.cn"));
    }
}

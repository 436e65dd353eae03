//! The DHHC-1 representation against vectors made without this code: the NVMe
//! specification's example secret, and secrets built by hand with Python's zlib.crc32 and
//! base64 (`base64.b64encode(key + struct.pack('<I', zlib.crc32(key)))`).

use super::*;

/// The example of the NVMe Base Specification (8.3.4.5.8; also nvme-cli's documentation and
/// the kernel's commit that let any transformation take any key length).
const SPEC: &str = "DHHC-1:00:ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n:";

/// Keys of 32, 48 and 64 bytes 0, 1, 2, ..., with transformations 01, 02 and 03, made with
/// Python (see above).
const BY_HAND: [(&str, usize, u8); 3] = [
    (
        "DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:",
        32,
        1,
    ),
    (
        "DHHC-1:02:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vcSEgBQ==:",
        48,
        2,
    ),
    (
        "DHHC-1:03:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P4zODhA=:",
        64,
        3,
    ),
];

fn counting(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

#[test]
fn crc32_is_the_standard_one() {
    // The check value of CRC-32/ISO-HDLC, and zlib's.
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"a"), 0xe8b7_be43);
    // The spec's example carries a7 0d 69 fa... as its last four bytes: fa690da7 read
    // little-endian.
    let bytes = base64_decode("ia6zGodOr4SEG0Zzaw398rpY0wqipUWj4jWjUh4HWUz6aQ2n").unwrap();
    assert_eq!(crc32(&bytes[..32]), 0xa70d_69fa);
}

#[test]
fn base64_as_rfc_4648() {
    for (plain, coded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64_encode(plain.as_bytes()), coded);
        assert_eq!(base64_decode(coded).as_deref(), Ok(plain.as_bytes()));
    }
    assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
    for bad in ["Zg=", "Zg", "Zh==", "Z!==", "Z===", "Zm9v\n"] {
        assert!(base64_decode(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_specifications_example_parses() {
    let s = Secret::parse(SPEC).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.transform, s.len()), (0, 32));
    assert_eq!(s.encode(), SPEC);
    // Any transformation takes any key length (Linux since 6.7).
    for hh in ["01", "02", "03"] {
        let text = SPEC.replace(":00:", &format!(":{hh}:"));
        assert_eq!(Secret::parse(&text).map(|s| s.encode()), Ok(text));
    }
}

#[test]
fn secrets_made_by_hand_parse_and_encode_back() {
    for (text, len, transform) in BY_HAND {
        let s = Secret::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(s, Secret::new(transform, counting(len)).unwrap());
        assert_eq!(s.encode(), text);
        // Files end with a newline.
        assert_eq!(Secret::parse(&format!("  {text}\n")), Ok(s));
    }
}

/// Any one character changed in the base64 of a secret is found: the CRC no longer matches
/// (or the text is no longer canonical base64).
#[test]
fn a_changed_character_breaks_the_crc() {
    let s = Secret::parse(SPEC).unwrap();
    let start = "DHHC-1:00:".len();
    let mut crc_mismatches = 0;
    for i in start..SPEC.len() - 1 {
        let mut bytes = SPEC.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let text = String::from_utf8(bytes).unwrap();
        let e = Secret::parse(&text).expect_err(&text);
        crc_mismatches += usize::from(e.starts_with("CRC-32 mismatch"));
    }
    assert!(crc_mismatches >= 47, "{crc_mismatches}");
    let one = format!("{}B{}", &SPEC[..20], &SPEC[21..]);
    assert_eq!(
        Secret::parse(&one),
        Err(
            "CRC-32 mismatch: the secret says a70d69fa, its key gives 37d52cde (a character \
             changed or missing?)"
                .into()
        )
    );
    assert_eq!(s.len(), 32);
}

#[test]
fn bad_secrets_say_what_is_wrong_and_never_show_the_key() {
    let key16 = {
        let k = counting(16);
        let mut b = k.clone();
        b.extend_from_slice(&crc32(&k).to_le_bytes());
        format!("DHHC-1:00:{}:", base64_encode(&b))
    };
    for (text, why) in [
        ("", "not a DH-HMAC-CHAP secret: it starts with \"DHHC-1:\""),
        ("DHHC-2:00:abcd:", "not a DH-HMAC-CHAP secret"),
        ("DHHC-1:04:AAAA:", "unknown transformation \"04\" (00 none"),
        ("DHHC-1:1:AAAA:", "unknown transformation \"1\""),
        ("DHHC-1:00", "no \":\" after the transformation"),
        (
            &SPEC[..SPEC.len() - 1],
            "no \":\" at the end (DHHC-1:00:...:)",
        ),
        (
            "DHHC-1:00:ia6z*odO:",
            "the key is not base64: character 5 is '*'",
        ),
        (
            &key16,
            "the key is 16 bytes; a DH-HMAC-CHAP key is 32, 48 or 64 bytes",
        ),
        (
            "DHHC-1:00::",
            "0 bytes are too few for a key and its CRC-32",
        ),
        (
            "DHHC-1:00:AAAA:",
            "3 bytes are too few for a key and its CRC-32",
        ),
    ] {
        let e = Secret::parse(text).expect_err(text);
        assert!(e.starts_with(why), "{text:?}: {e}");
    }
    let e = Secret::parse(&SPEC.replace("ia6z", "ia7z")).unwrap_err();
    assert!(!e.contains("ia7z") && !e.contains("aQ2n"), "{e}");
    let debug = format!("{:?}", Secret::parse(SPEC).unwrap());
    assert_eq!(debug, "Secret { transform: 0, 32 bytes }");
}

#[test]
fn generated_secrets_round_trip_through_the_parser() {
    for transform in 0..=3 {
        for len in KEY_LENGTHS {
            let random = counting(len);
            let s = Secret::generate(transform, len, &mut &random[..]).unwrap();
            let text = s.encode();
            // 59, 83 or 103 characters, as nvme-cli checks.
            assert_eq!(text.len(), 11 + (len + 4).div_ceil(3) * 4, "{text}");
            assert!(text.starts_with(&format!("DHHC-1:0{transform}:")), "{text}");
            assert_eq!(Secret::parse(&text), Ok(s));
        }
    }
    assert_eq!(
        Secret::generate(1, 32, &mut &counting(32)[..]).map(|s| s.encode()),
        Ok(BY_HAND[0].0.to_string())
    );
    let e = Secret::generate(0, 40, &mut &counting(64)[..]).unwrap_err();
    assert_eq!(e, "the key is 40 bytes; a DH-HMAC-CHAP key is 32, 48 or 64");
    assert!(Secret::generate(4, 32, &mut &counting(64)[..]).is_err());
    // Too few random bytes.
    assert!(Secret::generate(0, 32, &mut &counting(8)[..]).is_err());
}

#[test]
fn secrets_from_a_file_standard_input_or_the_argument() {
    let dir = crate::testutil::Scratch::new("dhchap-files");
    let file = dir.write("host.key", &format!("{SPEC}\n"));
    let want = Secret::parse(SPEC).unwrap();
    let mut no_stdin: &[u8] = &[];
    assert_eq!(
        read_secret(&format!("@{file}"), &mut no_stdin),
        Ok(want.clone())
    );
    assert_eq!(read_secret(SPEC, &mut no_stdin), Ok(want.clone()));
    let stdin = format!("{}\n", BY_HAND[1].0);
    assert_eq!(
        read_secret("-", &mut stdin.as_bytes()).map(|s| s.len()),
        Ok(48)
    );
    let missing = dir.0.join("none.key").display().to_string();
    let e = read_secret(&format!("@{missing}"), &mut no_stdin).unwrap_err();
    assert!(e.starts_with(&format!("{missing}: cannot read: ")), "{e}");
    let bad = dir.write("bad.key", "DHHC-1:00:AAAA\n");
    let e = read_secret(&format!("@{bad}"), &mut no_stdin).unwrap_err();
    assert_eq!(e, format!("{bad}: no \":\" at the end (DHHC-1:00:...:)"));
    let e = read_secret("-", &mut "nonsense".as_bytes()).unwrap_err();
    assert!(
        e.starts_with("standard input: not a DH-HMAC-CHAP secret"),
        "{e}"
    );
}

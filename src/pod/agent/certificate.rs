//! Certificates among issued secrets (SPEC 1.3): an answer with `certificate` and
//! `expiration` is one. Its validity is read from the certificate itself (x509-parser),
//! and live mode issues it again at two thirds of its lifetime, or `renewBefore` ahead
//! of notAfter, a little earlier by jitter.

use super::format::SecretData;

/// A certificate's own notBefore and notAfter, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

/// The validity of the answer's certificate, when the answer is a certificate (it has
/// `certificate` and `expiration`) and the first PEM block parses.
pub fn validity(data: &SecretData) -> Option<Validity> {
    if !data.contains_key("expiration") {
        return None;
    }
    let pem = data.get("certificate")?.as_text();
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = block.parse_x509().ok()?;
    let v = cert.validity();
    Some(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

/// The most jitter takes off the renewal time: this fraction of the lifetime.
const JITTER_PERCENT: i64 = 5;

/// When (Unix seconds) to issue the certificate again: `renew_before` seconds ahead of
/// notAfter when that leaves part of the lifetime, else at two thirds of it; minus a
/// random jitter of up to [`JITTER_PERCENT`] of the lifetime (`jitter` in 0..=1000
/// thousandths of it). Never sooner than a third of the time left after `now`: a
/// certificate whose notBefore is backdated far (the PKI's `not_before_duration`) is not
/// issued again in a loop.
pub fn renewal_time(validity: Validity, renew_before: Option<u64>, jitter: u64, now: i64) -> i64 {
    let lifetime = (validity.not_after - validity.not_before).max(0);
    let two_thirds = validity.not_before + lifetime * 2 / 3;
    let target = match renew_before.map(|r| r.min(i64::MAX as u64) as i64) {
        Some(r) if r > 0 && r < lifetime => validity.not_after - r,
        _ => two_thirds,
    };
    let spread = lifetime * JITTER_PERCENT / 100;
    let jitter = spread * (jitter.min(1000) as i64) / 1000;
    let floor = now + (validity.not_after - now).max(0) / 3;
    (target - jitter).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_two_thirds_or_renew_before_never_later() {
        let v = Validity {
            not_before: 1000,
            not_after: 1000 + 3000,
        };
        assert_eq!(renewal_time(v, None, 0, 1000), 3000);
        assert_eq!(renewal_time(v, None, 1000, 1000), 3000 - 150);
        assert_eq!(renewal_time(v, Some(600), 0, 1000), 3400);
        // A renewBefore as long as the lifetime would issue again at once, in a loop.
        assert_eq!(renewal_time(v, Some(3000), 0, 1000), 3000);
        assert_eq!(renewal_time(v, Some(5000), 0, 1000), 3000);
        for j in [0, 1, 500, 999, 1000, 5000] {
            let t = renewal_time(v, None, j, 1000);
            assert!((2850..=3000).contains(&t), "{t}");
        }
        // Backdated by 30 s with a 15 s TTL: a third of the 15 s left, not at once.
        let short = Validity {
            not_before: 970,
            not_after: 1015,
        };
        assert_eq!(renewal_time(short, None, 0, 1000), 1005);
    }
}

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use morpheus_domain::ports::{InvalidToken, TokenCodec};
use morpheus_domain::{TokenClaims, TokenKind, UserId};
use serde::{Deserialize, Serialize};

/// Issuer and audiences are fixed: a token minted for another service (or another kind) never
/// validates here.
const ISSUER: &str = "morpheus-gateway";
const ACCESS_AUDIENCE: &str = "morpheus-gateway:access";
const REFRESH_AUDIENCE: &str = "morpheus-gateway:refresh";
/// Clock skew tolerated on `exp`, `nbf` and `iat` (jsonwebtoken's default is a full minute).
const LEEWAY_SECONDS: u64 = 5;

pub struct JwtSettings {
    /// HS256 key; at least 32 bytes (RFC 7518 §3.2).
    pub secret: Vec<u8>,
    /// Retired keys: tokens they signed stay valid until they expire; nothing new is signed
    /// with them.
    pub previous_secrets: Vec<Vec<u8>>,
}

/// HS256 JWTs, algorithm pinned by configuration (never taken from the token's header).
///
/// Every token names its signing key in `kid` (a fingerprint of the key). The `kid` only
/// selects among the keys configured here; it never loads anything, so it cannot be used to
/// inject a key (RFC 8725 §3.10).
pub struct JwtCodec {
    kid: String,
    encoding: EncodingKey,
    decoding: Vec<(String, DecodingKey)>,
    access: Validation,
    refresh: Validation,
}

/// The public name of a key: 16 hex digits of its SHA-256.
fn fingerprint(secret: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, secret).as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    /// Never issued here; a token that carries one must be past it (and it must be a number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    jti: String,
    /// "access" or "refresh": checked in addition to the audience (RFC 8725 §3.12).
    token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fam: Option<String>,
    /// Access tokens: the user's token generation at issue (absent: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: i64,
    /// When the user last signed in with their password (OpenID Connect's `auth_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl JwtCodec {
    pub const MIN_SECRET_LEN: usize = 32;

    /// # Errors
    /// When the secret is shorter than 32 bytes.
    pub fn new(settings: JwtSettings) -> anyhow::Result<Self> {
        let all = std::iter::once(&settings.secret).chain(&settings.previous_secrets);
        let mut decoding = Vec::new();
        for secret in all {
            anyhow::ensure!(
                secret.len() >= Self::MIN_SECRET_LEN,
                "a JWT secret must be at least {} bytes",
                Self::MIN_SECRET_LEN
            );
            decoding.push((fingerprint(secret), DecodingKey::from_secret(secret)));
        }
        Ok(Self {
            kid: fingerprint(&settings.secret),
            encoding: EncodingKey::from_secret(&settings.secret),
            decoding,
            access: validation(ACCESS_AUDIENCE),
            refresh: validation(REFRESH_AUDIENCE),
        })
    }
}

fn validation(audience: &str) -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = LEEWAY_SECONDS;
    v.validate_nbf = true;
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v
}

fn audience(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Access => ACCESS_AUDIENCE,
        TokenKind::Refresh => REFRESH_AUDIENCE,
    }
}

impl TokenCodec for JwtCodec {
    fn encode(&self, claims: &TokenClaims) -> anyhow::Result<String> {
        let jwt = Claims {
            sub: claims.user_id.0.to_string(),
            iss: ISSUER.to_owned(),
            aud: audience(claims.kind).to_owned(),
            iat: claims.issued_at.timestamp(),
            exp: claims.expires_at.timestamp(),
            nbf: None,
            jti: claims.token_id.clone(),
            token_type: claims.kind.as_str().to_owned(),
            fam: claims.family_id.clone(),
            generation: claims.generation,
            auth_time: claims.authenticated_at.map(|at| at.timestamp()),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &jwt, &self.encoding)?)
    }

    fn decode(&self, token: &str, expected: TokenKind) -> Result<TokenClaims, InvalidToken> {
        let validation = match expected {
            TokenKind::Access => &self.access,
            TokenKind::Refresh => &self.refresh,
        };
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| InvalidToken)?
            .kid
            .ok_or(InvalidToken)?;
        let (_, key) = self
            .decoding
            .iter()
            .find(|(id, _)| *id == kid)
            .ok_or(InvalidToken)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|_| InvalidToken)?;
        let c = data.claims;
        if c.token_type != expected.as_str() {
            return Err(InvalidToken);
        }
        // Issued in the future (beyond the clock skew) or not valid yet: refused. jsonwebtoken
        // checks `exp` and `nbf`, but skips an `nbf` that is not a number, and never `iat`.
        let latest = Utc::now().timestamp() + LEEWAY_SECONDS as i64;
        if c.iat > latest || c.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(InvalidToken);
        }
        let user_id = c.sub.parse::<i64>().map(UserId).map_err(|_| InvalidToken)?;
        let at = |secs: i64| DateTime::<Utc>::from_timestamp(secs, 0).ok_or(InvalidToken);
        Ok(TokenClaims {
            user_id,
            kind: expected,
            token_id: c.jti,
            family_id: c.fam,
            generation: c.generation,
            authenticated_at: c.auth_time.map(at).transpose()?,
            issued_at: at(c.iat)?,
            expires_at: at(c.exp)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn codec_with(secret: u8, previous: &[u8]) -> JwtCodec {
        JwtCodec::new(JwtSettings {
            secret: vec![secret; 32],
            previous_secrets: previous.iter().map(|&p| vec![p; 32]).collect(),
        })
        .unwrap()
    }

    fn codec() -> JwtCodec {
        codec_with(1, &[])
    }

    fn claims(kind: TokenKind) -> TokenClaims {
        let now = Utc::now();
        TokenClaims {
            user_id: UserId(42),
            kind,
            token_id: "t1".into(),
            family_id: Some("f1".into()),
            generation: 3,
            authenticated_at: Some(now),
            issued_at: now,
            expires_at: now + Duration::minutes(5),
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        let settings = |secret: usize, previous: usize| JwtSettings {
            secret: vec![1u8; secret],
            previous_secrets: vec![vec![2u8; previous]],
        };
        assert!(JwtCodec::new(settings(31, 32)).is_err());
        assert!(JwtCodec::new(settings(32, 16)).is_err());
        assert!(JwtCodec::new(settings(32, 32)).is_ok());
    }

    #[test]
    fn tokens_round_trip_and_kinds_do_not_mix() {
        let c = codec();
        let access = c.encode(&claims(TokenKind::Access)).unwrap();
        let refresh = c.encode(&claims(TokenKind::Refresh)).unwrap();
        assert_eq!(
            c.decode(&access, TokenKind::Access).unwrap().user_id,
            UserId(42)
        );
        assert_eq!(
            c.decode(&refresh, TokenKind::Refresh)
                .unwrap()
                .family_id
                .as_deref(),
            Some("f1")
        );
        let decoded = c.decode(&access, TokenKind::Access).unwrap();
        assert_eq!(decoded.generation, 3);
        let signed_in = claims(TokenKind::Access).authenticated_at.unwrap();
        assert_eq!(
            decoded.authenticated_at.map(|at| at.timestamp()),
            Some(signed_in.timestamp())
        );
        assert!(c.decode(&access, TokenKind::Refresh).is_err());
        assert!(c.decode(&refresh, TokenKind::Access).is_err());
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let c = codec();
        let mut old = claims(TokenKind::Access);
        old.expires_at = Utc::now() - Duration::seconds(LEEWAY_SECONDS as i64 + 2);
        assert!(
            c.decode(&c.encode(&old).unwrap(), TokenKind::Access)
                .is_err()
        );
        let foreign = codec_with(2, &[])
            .encode(&claims(TokenKind::Access))
            .unwrap();
        assert!(c.decode(&foreign, TokenKind::Access).is_err());
    }

    #[test]
    fn after_a_key_rotation_old_tokens_live_until_the_old_key_is_retired() {
        let old = codec_with(1, &[]);
        let token = old.encode(&claims(TokenKind::Access)).unwrap();
        let rotated = codec_with(2, &[1]);
        assert!(rotated.decode(&token, TokenKind::Access).is_ok());
        let fresh = rotated.encode(&claims(TokenKind::Access)).unwrap();
        assert!(old.decode(&fresh, TokenKind::Access).is_err());
        let retired = codec_with(2, &[]);
        assert!(retired.decode(&token, TokenKind::Access).is_err());
        assert!(retired.decode(&fresh, TokenKind::Access).is_ok());
    }

    #[test]
    fn a_token_without_a_known_kid_is_refused_even_when_correctly_signed() {
        let c = codec();
        let body = Claims {
            sub: "42".into(),
            iss: ISSUER.into(),
            aud: ACCESS_AUDIENCE.into(),
            iat: Utc::now().timestamp(),
            exp: Utc::now().timestamp() + 60,
            nbf: None,
            jti: "j".into(),
            token_type: "access".into(),
            fam: None,
            generation: 0,
            auth_time: None,
        };
        let key = EncodingKey::from_secret(&[1u8; 32]);
        let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &body, &key).unwrap();
        assert!(c.decode(&no_kid, TokenKind::Access).is_err());
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("../../../../dev/null".into());
        let odd_kid = jsonwebtoken::encode(&header, &body, &key).unwrap();
        assert!(c.decode(&odd_kid, TokenKind::Access).is_err());
        header.kid = Some(fingerprint(&[1u8; 32]));
        let right_kid = jsonwebtoken::encode(&header, &body, &key).unwrap();
        assert!(c.decode(&right_kid, TokenKind::Access).is_ok());
    }

    #[test]
    fn a_token_issued_in_the_future_or_not_valid_yet_is_refused() {
        let c = codec();
        let now = Utc::now().timestamp();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(fingerprint(&[1u8; 32]));
        let key = EncodingKey::from_secret(&[1u8; 32]);
        let token = |set: &[(&str, serde_json::Value)]| {
            let mut body = serde_json::json!({
                "sub": "42", "iss": ISSUER, "aud": ACCESS_AUDIENCE, "iat": now,
                "exp": now + 600, "jti": "j", "token_type": "access",
            });
            for (claim, value) in set {
                body[*claim] = value.clone();
            }
            jsonwebtoken::encode(&header, &body, &key).unwrap()
        };
        let soon = serde_json::json!(now + LEEWAY_SECONDS as i64 - 2);
        let later = serde_json::json!(now + 60);
        let before = serde_json::json!(now - 60);
        for (name, set, accepted) in [
            ("as issued", vec![], true),
            ("iat within the leeway", vec![("iat", soon.clone())], true),
            ("iat in the future", vec![("iat", later.clone())], false),
            ("iat not a number", vec![("iat", "now".into())], false),
            ("nbf passed", vec![("nbf", before)], true),
            ("nbf within the leeway", vec![("nbf", soon)], true),
            ("nbf in the future", vec![("nbf", later)], false),
            ("nbf not a number", vec![("nbf", "soon".into())], false),
        ] {
            let decoded = c.decode(&token(&set), TokenKind::Access);
            assert_eq!(decoded.is_ok(), accepted, "{name}: {decoded:?}");
        }
    }
}

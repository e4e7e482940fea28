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
/// Clock skew tolerated on `exp` (jsonwebtoken's default is a full minute).
const LEEWAY_SECONDS: u64 = 5;

pub struct JwtSettings {
    /// HS256 key; at least 32 bytes (RFC 7518 §3.2).
    pub secret: Vec<u8>,
}

/// HS256 JWTs, algorithm pinned by configuration (never taken from the token's header).
pub struct JwtCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access: Validation,
    refresh: Validation,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    /// "access" or "refresh": checked in addition to the audience (RFC 8725 §3.12).
    token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fam: Option<String>,
}

impl JwtCodec {
    pub const MIN_SECRET_LEN: usize = 32;

    /// # Errors
    /// When the secret is shorter than 32 bytes.
    pub fn new(settings: JwtSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.secret.len() >= Self::MIN_SECRET_LEN,
            "the JWT secret must be at least {} bytes",
            Self::MIN_SECRET_LEN
        );
        Ok(Self {
            encoding: EncodingKey::from_secret(&settings.secret),
            decoding: DecodingKey::from_secret(&settings.secret),
            access: validation(ACCESS_AUDIENCE),
            refresh: validation(REFRESH_AUDIENCE),
        })
    }
}

fn validation(audience: &str) -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = LEEWAY_SECONDS;
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
            jti: claims.token_id.clone(),
            token_type: claims.kind.as_str().to_owned(),
            fam: claims.family_id.clone(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &jwt,
            &self.encoding,
        )?)
    }

    fn decode(&self, token: &str, expected: TokenKind) -> Result<TokenClaims, InvalidToken> {
        let validation = match expected {
            TokenKind::Access => &self.access,
            TokenKind::Refresh => &self.refresh,
        };
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, validation)
            .map_err(|_| InvalidToken)?;
        let c = data.claims;
        if c.token_type != expected.as_str() {
            return Err(InvalidToken);
        }
        let user_id = c.sub.parse::<i64>().map(UserId).map_err(|_| InvalidToken)?;
        let at = |secs: i64| DateTime::<Utc>::from_timestamp(secs, 0).ok_or(InvalidToken);
        Ok(TokenClaims {
            user_id,
            kind: expected,
            token_id: c.jti,
            family_id: c.fam,
            issued_at: at(c.iat)?,
            expires_at: at(c.exp)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn codec() -> JwtCodec {
        JwtCodec::new(JwtSettings {
            secret: vec![1u8; 32],
        })
        .unwrap()
    }

    fn claims(kind: TokenKind) -> TokenClaims {
        let now = Utc::now();
        TokenClaims {
            user_id: UserId(42),
            kind,
            token_id: "t1".into(),
            family_id: Some("f1".into()),
            issued_at: now,
            expires_at: now + Duration::minutes(5),
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(
            JwtCodec::new(JwtSettings {
                secret: vec![1u8; 31]
            })
            .is_err()
        );
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
        let other = JwtCodec::new(JwtSettings {
            secret: vec![2u8; 32],
        })
        .unwrap();
        let foreign = other.encode(&claims(TokenKind::Access)).unwrap();
        assert!(c.decode(&foreign, TokenKind::Access).is_err());
    }
}

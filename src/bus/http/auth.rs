//! Bearer tokens (`[[http.tokens]]`): who a caller of the REST API and the dashboard is, and
//! with which role. Tokens are compared in constant time, and every configured token is
//! compared, so the answer's timing says nothing about how close a guess was.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::config::HttpToken;
use crate::contract::Role;

use super::HttpState;

/// The query parameter a browser may use where it cannot set a header (`EventSource`, the
/// dashboard's own URL).
pub const TOKEN_PARAM: &str = "access_token";

/// The configured token that `presented` is, if any.
pub fn identify<'a>(tokens: &'a [HttpToken], presented: &str) -> Option<&'a HttpToken> {
    let mut found = None;
    for t in tokens {
        let Some(secret) = &t.token else { continue };
        if bool::from(
            secret
                .expose_secret()
                .as_bytes()
                .ct_eq(presented.as_bytes()),
        ) {
            found = Some(t);
        }
    }
    found
}

/// The token a request presents: `Authorization: Bearer …`, else `?access_token=…`.
pub fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    from_header.or_else(|| {
        url::form_urlencoded::parse(query?.as_bytes())
            .find(|(k, _)| k == TOKEN_PARAM)
            .map(|(_, v)| v.into_owned())
    })
}

/// The `id` and role of the token `headers`/`query` present; `None` when it matches none.
pub fn caller(s: &HttpState, headers: &HeaderMap, query: Option<&str>) -> Option<(String, Role)> {
    let given = presented(headers, query)?;
    identify(&s.cfg.http.tokens, &given).map(|t| (t.id.clone(), t.role))
}

/// 401 with the scheme to use.
pub fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(crate::contract::ControlError {
            error: message.to_string(),
        }),
    )
        .into_response()
}

/// Guards the dashboard and its data: once any token is configured, a viewer's (or an
/// operator's) token is needed.
pub async fn require_viewer(State(s): State<HttpState>, request: Request, next: Next) -> Response {
    if s.cfg.http.tokens.is_empty() {
        return next.run(request).await;
    }
    match caller(&s, request.headers(), request.uri().query()) {
        Some(_) => next.run(request).await,
        None => unauthorized(
            "a viewer token is needed: send `Authorization: Bearer <token>` or open the dashboard as /?access_token=<token>",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn token(id: &str, value: &str, role: Role) -> HttpToken {
        HttpToken {
            id: id.into(),
            token_env: None,
            token_file: None,
            role,
            token: Some(SecretString::from(value.to_string())),
        }
    }

    #[test]
    fn only_an_exact_token_matches() {
        let tokens = [
            token("dash", "viewer-token-0123456789", Role::Viewer),
            token("ops", "operator-token-0123456789", Role::Operator),
        ];
        assert_eq!(
            identify(&tokens, "operator-token-0123456789").map(|t| t.id.as_str()),
            Some("ops")
        );
        assert!(identify(&tokens, "operator-token-012345678").is_none());
        assert!(identify(&tokens, "").is_none());
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(
            presented(&h, Some("access_token=zzz")).as_deref(),
            Some("abc")
        );
        assert_eq!(
            presented(&HeaderMap::new(), Some("limit=5&access_token=z%2Bz")).as_deref(),
            Some("z+z")
        );
        assert_eq!(presented(&HeaderMap::new(), None), None);
    }
}

//! The control service's own check of who may call what, on top of the NATS server's
//! permissions: a second line for when the server's configuration is wider than meant.

use crate::config::ControlConfig;
use crate::contract::{AuditChannel, Role};

use super::super::audit::Call;
use super::ControlFailure;

/// Whether `call` may go ahead. `granted` is a role the channel already established (the
/// REST API's token); over NATS, the server-stamped identity is checked against `[control]`.
pub fn check(
    cfg: &ControlConfig,
    call: &Call<'_>,
    granted: Option<Role>,
) -> Result<(), ControlFailure> {
    let needed = call.endpoint.role();
    if let Some(role) = granted {
        return if role >= needed {
            Ok(())
        } else {
            Err(ControlFailure::Denied(format!(
                "`{}` needs the {} role; this caller has {}",
                call.endpoint.name(),
                needed.as_str(),
                role.as_str()
            )))
        };
    }
    if call.channel == AuditChannel::Rest {
        return Err(ControlFailure::Denied("no valid bearer token".into()));
    }
    let actor = &call.actor;
    if cfg.require_identity && !actor.verified {
        return Err(ControlFailure::Denied(
            "the NATS server did not identify the caller (control.require_identity is on: call through the account that imports the control service)"
                .into(),
        ));
    }
    if needed == Role::Operator && actor.verified && !cfg.operators.is_empty() {
        let user = actor.user.as_deref().unwrap_or("");
        if !cfg.operators.iter().any(|o| o == user) {
            return Err(ControlFailure::Denied(format!(
                "`{}` is for operators; NATS user `{user}` is not in control.operators",
                call.endpoint.name()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Actor, Endpoint};

    fn call(endpoint: Endpoint, channel: AuditChannel, actor: Actor) -> Call<'static> {
        Call {
            endpoint,
            channel,
            actor,
            body: b"{}",
        }
    }

    #[test]
    fn a_viewer_token_reads_but_cannot_change() {
        let cfg = ControlConfig::default();
        let viewer = Some(Role::Viewer);
        let rest = |e| call(e, AuditChannel::Rest, Actor::token("dash"));
        assert!(check(&cfg, &rest(Endpoint::Status), viewer).is_ok());
        let denied = check(&cfg, &rest(Endpoint::ModeSet), viewer).unwrap_err();
        assert_eq!(denied.code(), 403);
        assert!(check(&cfg, &rest(Endpoint::ModeSet), Some(Role::Operator)).is_ok());
        assert!(check(&cfg, &rest(Endpoint::Status), None).is_err());
    }

    #[test]
    fn over_nats_the_servers_identity_is_checked_against_the_config() {
        let open = ControlConfig::default();
        let anyone = call(
            Endpoint::ForceStatus,
            AuditChannel::Nats,
            Actor::unverified(),
        );
        assert!(
            check(&open, &anyone, None).is_ok(),
            "the server's permissions decide"
        );
        let strict = ControlConfig {
            require_identity: true,
            operators: vec!["operator".into()],
        };
        assert!(check(&strict, &anyone, None).is_err());
        let who = |user: &str| Actor {
            verified: true,
            user: Some(user.into()),
            account: Some("OPS".into()),
            ..Actor::default()
        };
        let viewer = call(Endpoint::ForceStatus, AuditChannel::Nats, who("viewer"));
        assert!(check(&strict, &viewer, None).is_err());
        let read = call(Endpoint::Status, AuditChannel::Nats, who("viewer"));
        assert!(check(&strict, &read, None).is_ok());
        let op = call(Endpoint::ForceStatus, AuditChannel::Nats, who("operator"));
        assert!(check(&strict, &op, None).is_ok());
    }
}

//! The `/v1` handlers. Each one authenticates, parses (validation is parsing into domain
//! types, before anything is looked up), calls one service and renders the answer.

use crate::auth::Authed;
use crate::body::Body;
use crate::dto::*;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::openapi::{BodyRouteErrors, PathRouteErrors, PublicRouteErrors};
use crate::request_id;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use domain::Error;
use domain::ids::{TotpId, UserRef};
use domain::model::Project;
use domain::recovery::RecoveryCode;
use domain::service::{CreateUser, Latch, SessionRef, SessionRequest, UpdateUser};
use domain::totp::TotpCode;

type Reply = Result<HttpResponse, ApiError>;

fn ok<T: serde::Serialize>(body: T) -> Reply {
    Ok(HttpResponse::Ok().json(body))
}

fn user_ref(p: &Project, raw: &str) -> Result<UserRef, ApiError> {
    Ok(UserRef::parse(raw, p.env)?)
}

fn bad_request(detail: String) -> ApiError {
    ApiError(Error::BadRequest(detail))
}

/// An integer field parsed from any JSON number: values beyond i64 saturate, so the range
/// check answers with the field's own error (`invalid_expiration`, …); fractions are refused.
fn int_field(name: &str, n: Option<serde_json::Number>) -> Result<Option<i64>, ApiError> {
    let Some(n) = n else { return Ok(None) };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    if n.is_u64() {
        return Ok(Some(i64::MAX));
    }
    match n.as_f64() {
        // `as` saturates at the i64 bounds, which is what the range check needs.
        Some(f) if f.is_finite() && f.fract() == 0.0 => Ok(Some(f as i64)),
        _ => Err(bad_request(format!("field `{name}`: must be an integer"))),
    }
}

fn session_request(
    token: Option<String>,
    jwt: Option<String>,
    minutes: Option<serde_json::Number>,
    claims: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<SessionRequest, ApiError> {
    Ok(SessionRequest {
        duration_minutes: int_field("session_duration_minutes", minutes)?,
        token,
        jwt,
        custom_claims: claims,
    })
}

/// Create a user.
///
/// Creates a user with an email or a phone number (or both). `create_user_as_pending` keeps it
/// `pending` until its first successful TOTP authentication.
#[utoipa::path(
    tag = "Users",
    request_body = CreateUserRequest,
    security(("basic" = [])),
    responses(
        (status = 200, description = "The new user", body = CreateUserResponse),
        BodyRouteErrors,
    )
)]
#[post("/v1/users")]
pub(crate) async fn create_user(latch: web::Data<Latch>, auth: Authed, body: Body) -> Reply {
    let req: CreateUserRequest = body.json()?;
    let p = &auth.0;
    let user = latch
        .create_user(
            p,
            CreateUser {
                email: req.email,
                phone_number: req.phone_number,
                name: req.name.map(Name::into_domain).unwrap_or_default(),
                create_user_as_pending: req.create_user_as_pending.unwrap_or(false),
                trusted_metadata: req.trusted_metadata,
                untrusted_metadata: req.untrusted_metadata,
                external_id: req.external_id,
                roles: req.roles,
            },
        )
        .await?;
    ok(CreateUserResponse {
        status_code: 200,
        request_id: request_id::current(),
        user_id: user.id.clone(),
        email_id: user.emails.first().map(|e| e.id.clone()).unwrap_or_default(),
        phone_id: user
            .phone_numbers
            .first()
            .map(|e| e.id.clone())
            .unwrap_or_default(),
        status: user.status.as_str().to_owned(),
        user: User::from(&user),
    })
}

/// Get a user.
///
/// `user_id` may be the user's id or its external id.
#[utoipa::path(
    tag = "Users",
    params(("user_id" = String, Path, description = "A user id or external id", pattern = r"^[A-Za-z0-9._|-]{1,128}$")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "The user, its fields at the top level", body = GetUserResponse),
        PathRouteErrors,
    )
)]
#[get("/v1/users/{user_id}")]
pub(crate) async fn get_user(latch: web::Data<Latch>, auth: Authed, path: web::Path<String>) -> Reply {
    let p = &auth.0;
    let user = latch.get_user(p, &user_ref(p, &path)?).await?;
    ok(GetUserResponse {
        status_code: 200,
        request_id: request_id::current(),
        user: User::from(&user),
    })
}

/// Update a user.
///
/// Absent or null fields are left unchanged. Metadata merges at the top level; a top-level
/// `null` deletes that key.
#[utoipa::path(
    tag = "Users",
    params(("user_id" = String, Path, description = "A user id or external id", pattern = r"^[A-Za-z0-9._|-]{1,128}$")),
    request_body = UpdateUserRequest,
    security(("basic" = [])),
    responses(
        (status = 200, description = "The updated user", body = UpdateUserResponse),
        BodyRouteErrors,
    )
)]
#[put("/v1/users/{user_id}")]
pub(crate) async fn update_user(
    latch: web::Data<Latch>,
    auth: Authed,
    path: web::Path<String>,
    body: Body,
) -> Reply {
    let p = &auth.0;
    let target = user_ref(p, &path)?;
    let req: UpdateUserRequest = body.json()?;
    let user = latch
        .update_user(
            p,
            &target,
            UpdateUser {
                name: req.name.map(Name::into_domain),
                external_id: req.external_id,
                trusted_metadata: req.trusted_metadata,
                untrusted_metadata: req.untrusted_metadata,
                roles: req.roles,
            },
        )
        .await?;
    // The response repeats the user's emails and phone numbers beside the User object.
    let shown = User::from(&user);
    ok(UpdateUserResponse {
        status_code: 200,
        request_id: request_id::current(),
        user_id: user.id.clone(),
        emails: shown.emails.clone(),
        phone_numbers: shown.phone_numbers.clone(),
        crypto_wallets: vec![],
        user: shown,
    })
}

/// Delete a user.
///
/// Deletes the user with its TOTPs and recovery codes.
#[utoipa::path(
    tag = "Users",
    params(("user_id" = String, Path, description = "A user id or external id", pattern = r"^[A-Za-z0-9._|-]{1,128}$")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "Deleted", body = DeleteUserResponse),
        PathRouteErrors,
    )
)]
#[delete("/v1/users/{user_id}")]
pub(crate) async fn delete_user(latch: web::Data<Latch>, auth: Authed, path: web::Path<String>) -> Reply {
    let p = &auth.0;
    let user_id = latch.delete_user(p, &user_ref(p, &path)?).await?;
    ok(DeleteUserResponse {
        status_code: 200,
        request_id: request_id::current(),
        user_id,
    })
}

/// Delete a user's TOTP.
///
/// Deletes the TOTP and its recovery codes; the user stays.
#[utoipa::path(
    tag = "Users",
    params(("totp_id" = String, Path, description = "The TOTP id",
        pattern = r"^totp-(test|live)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "Deleted; the user without the TOTP", body = DeleteTotpResponse),
        PathRouteErrors,
    )
)]
#[delete("/v1/users/totps/{totp_id}")]
pub(crate) async fn delete_totp(latch: web::Data<Latch>, auth: Authed, path: web::Path<String>) -> Reply {
    let p = &auth.0;
    let user = latch.delete_totp(p, &TotpId::parse(&path, p.env)?).await?;
    ok(DeleteTotpResponse {
        status_code: 200,
        request_id: request_id::current(),
        user_id: user.id.clone(),
        user: User::from(&user),
    })
}

/// Create a TOTP.
///
/// Creates a pending TOTP with its secret, a QR code of the otpauth URI and ten recovery
/// codes. It becomes verified on its first successful authenticate; unverified, it expires
/// after `expiration_minutes`. A new create replaces a pending TOTP; a user with a verified
/// TOTP gets `active_totp_exists`.
#[utoipa::path(
    tag = "TOTP",
    request_body = CreateTotpRequest,
    security(("basic" = [])),
    responses(
        (status = 200, description = "The new TOTP", body = CreateTotpResponse),
        BodyRouteErrors,
    )
)]
#[post("/v1/totps")]
pub(crate) async fn create_totp(latch: web::Data<Latch>, auth: Authed, body: Body) -> Reply {
    let req: CreateTotpRequest = body.json()?;
    let p = &auth.0;
    let target = user_ref(p, &req.user_id)?;
    let minutes = int_field("expiration_minutes", req.expiration_minutes)?;
    let created = latch.create_totp(p, &target, minutes).await?;
    ok(CreateTotpResponse {
        status_code: 200,
        request_id: request_id::current(),
        totp_id: created.totp_id,
        secret: created.secret,
        qr_code: created.qr_code,
        recovery_codes: created.recovery_codes,
        user_id: created.user.id.clone(),
        user: User::from(&created.user),
    })
}

fn authenticated(a: domain::service::Authenticated) -> Reply {
    let (token, jwt, session) = match a.session {
        Some(m) => (m.token, m.jwt, Some(Session::new(&m.session, &a.user.roles))),
        None => (String::new(), String::new(), None),
    };
    ok(AuthenticateTotpResponse {
        status_code: 200,
        request_id: request_id::current(),
        user_id: a.user.id.clone(),
        totp_id: a.totp_id,
        session_token: token,
        session_jwt: jwt,
        user: User::from(&a.user),
        session,
    })
}

/// Authenticate a TOTP code.
///
/// Accepts the code of the current 30-second step or of the one before or after; each step is
/// accepted once. Wrong and replayed codes count towards the user lock; while locked, even a
/// correct code gets `user_lock_limit_reached`. With `session_duration_minutes` a session is
/// started; with `session_token` or `session_jwt` the factor is added to that live session.
#[utoipa::path(
    tag = "TOTP",
    request_body = AuthenticateTotpRequest,
    security(("basic" = [])),
    responses(
        (status = 200, description = "Authenticated", body = AuthenticateTotpResponse),
        BodyRouteErrors,
    )
)]
#[post("/v1/totps/authenticate")]
pub(crate) async fn authenticate_totp(
    latch: web::Data<Latch>,
    limits: web::Data<Limits>,
    auth: Authed,
    body: Body,
) -> Reply {
    let req: AuthenticateTotpRequest = body.json()?;
    let p = &auth.0;
    let target = user_ref(p, &req.user_id)?;
    let code = TotpCode::parse(&req.totp_code)?;
    limits.user_attempt(&p.id, &req.user_id).await?;
    let session = session_request(
        req.session_token,
        req.session_jwt,
        req.session_duration_minutes,
        req.session_custom_claims,
    )?;
    authenticated(latch.authenticate_totp(p, &target, &code, &session).await?)
}

/// Get recovery codes.
///
/// Lists the user's usable TOTPs with their unused recovery codes (`totps` is empty for a user
/// without a TOTP).
#[utoipa::path(
    tag = "TOTP",
    request_body = RecoveryCodesRequest,
    security(("basic" = [])),
    responses(
        (status = 200, description = "The unused recovery codes", body = RecoveryCodesResponse),
        BodyRouteErrors,
    )
)]
#[post("/v1/totps/recovery_codes")]
pub(crate) async fn recovery_codes(latch: web::Data<Latch>, auth: Authed, body: Body) -> Reply {
    let req: RecoveryCodesRequest = body.json()?;
    let p = &auth.0;
    let target = user_ref(p, &req.user_id)?;
    let (user, totps) = latch.recovery_codes(p, &target).await?;
    ok(RecoveryCodesResponse {
        status_code: 200,
        request_id: request_id::current(),
        user_id: user.id,
        totps: totps
            .into_iter()
            .map(|t| TotpRecoveryCodes {
                totp_id: t.totp_id,
                verified: t.verified,
                recovery_codes: t.recovery_codes,
            })
            .collect(),
    })
}

/// Recover with a recovery code.
///
/// Spends one unused recovery code of the user's verified TOTP; each code works once.
#[utoipa::path(
    tag = "TOTP",
    request_body = RecoverTotpRequest,
    security(("basic" = [])),
    responses(
        (status = 200, description = "Authenticated", body = AuthenticateTotpResponse),
        BodyRouteErrors,
    )
)]
#[post("/v1/totps/recover")]
pub(crate) async fn recover_totp(
    latch: web::Data<Latch>,
    limits: web::Data<Limits>,
    auth: Authed,
    body: Body,
) -> Reply {
    let req: RecoverTotpRequest = body.json()?;
    let p = &auth.0;
    let target = user_ref(p, &req.user_id)?;
    let code = RecoveryCode::parse(&req.recovery_code)?;
    limits.user_attempt(&p.id, &req.user_id).await?;
    let session = session_request(
        req.session_token,
        req.session_jwt,
        req.session_duration_minutes,
        req.session_custom_claims,
    )?;
    authenticated(latch.recover(p, &target, &code, &session).await?)
}

/// Authenticate a session.
///
/// Checks a session token or JWT (an expired JWT of a live session is accepted and refreshed),
/// marks the session accessed, extends it with `session_duration_minutes`, and returns a fresh
/// five-minute JWT.
#[utoipa::path(
    tag = "Sessions",
    request_body = AuthenticateSessionRequest,
    security(("basic" = [])),
    responses(
        (status = 200, description = "The live session", body = AuthenticateSessionResponse),
        BodyRouteErrors,
    )
)]
#[post("/v1/sessions/authenticate")]
pub(crate) async fn authenticate_session(latch: web::Data<Latch>, auth: Authed, body: Body) -> Reply {
    let req: AuthenticateSessionRequest = body.json()?;
    let p = &auth.0;
    let minutes = int_field("session_duration_minutes", req.session_duration_minutes)?;
    let (m, user) = latch
        .authenticate_session(
            p,
            req.session_token,
            req.session_jwt,
            minutes,
            req.session_custom_claims,
        )
        .await?;
    ok(AuthenticateSessionResponse {
        status_code: 200,
        request_id: request_id::current(),
        session: Session::new(&m.session, &user.roles),
        session_token: m.token,
        session_jwt: m.jwt,
        user: User::from(&user),
    })
}

/// List a user's sessions.
///
/// The user's live sessions, newest first.
#[utoipa::path(
    tag = "Sessions",
    params(SessionsQuery),
    security(("basic" = [])),
    responses(
        (status = 200, description = "The live sessions", body = SessionsResponse),
        PathRouteErrors,
    )
)]
#[get("/v1/sessions")]
pub(crate) async fn list_sessions(
    latch: web::Data<Latch>,
    auth: Authed,
    req: actix_web::HttpRequest,
) -> Reply {
    let q = web::Query::<SessionsQuery>::from_query(req.query_string())
        .map_err(|e| bad_request(format!("the query string is malformed ({e})")))?;
    let p = &auth.0;
    let target = user_ref(p, &q.user_id)?;
    let (user, sessions) = latch.list_sessions(p, &target).await?;
    ok(SessionsResponse {
        status_code: 200,
        request_id: request_id::current(),
        sessions: sessions.iter().map(|s| Session::new(s, &user.roles)).collect(),
    })
}

/// Revoke a session.
///
/// Ends the session named by exactly one of `session_id`, `session_token`, `session_jwt`, at
/// once: it no longer authenticates anywhere.
#[utoipa::path(
    tag = "Sessions",
    request_body = RevokeSessionRequest,
    security(("basic" = [])),
    responses(
        (status = 200, description = "Revoked", body = RevokeSessionResponse),
        BodyRouteErrors,
    )
)]
#[post("/v1/sessions/revoke")]
pub(crate) async fn revoke_session(latch: web::Data<Latch>, auth: Authed, body: Body) -> Reply {
    let req: RevokeSessionRequest = body.json()?;
    let named = [
        req.session_id.map(SessionRef::Id),
        req.session_token.map(SessionRef::Token),
        req.session_jwt.map(SessionRef::Jwt),
    ];
    let given: Vec<SessionRef> = named.into_iter().flatten().collect();
    let r = match <[SessionRef; 1]>::try_from(given) {
        Ok([r]) => r,
        Err(v) if v.is_empty() => return Err(ApiError(Error::NoSessionRevokeArguments)),
        Err(_) => return Err(ApiError(Error::TooManySessionRevokeArguments)),
    };
    latch.revoke_session(&auth.0, &r).await?;
    ok(RevokeSessionResponse {
        status_code: 200,
        request_id: request_id::current(),
    })
}

/// Get a project's JWKS.
///
/// The public keys that verify the project's session JWTs: the current one and the previous
/// one. Public (no credentials), as both SDKs fetch it without any.
#[utoipa::path(
    tag = "Sessions",
    params(("project_id" = String, Path, description = "The project id")),
    responses(
        (status = 200, description = "The keys", body = JwksResponse),
        PublicRouteErrors,
    )
)]
#[get("/v1/sessions/jwks/{project_id}")]
pub(crate) async fn jwks(
    req: HttpRequest,
    latch: web::Data<Latch>,
    limits: Option<web::Data<Limits>>,
    path: web::Path<String>,
) -> Reply {
    if let Some(limits) = limits {
        limits.jwks(&limits.client_ip(&req)).await?;
    }
    let keys = latch.jwks(&path).await?;
    ok(JwksResponse {
        status_code: 200,
        request_id: request_id::current(),
        keys: keys
            .into_iter()
            .map(|k| Jwk {
                kty: "RSA".into(),
                use_: "sig".into(),
                key_ops: vec!["verify".into()],
                alg: "RS256".into(),
                kid: k.kid,
                x5c: vec![],
                x5t_s256: String::new(),
                n: k.n,
                e: k.e,
            })
            .collect(),
    })
}

/// Search users.
///
/// Pages through the project's users matching a query, oldest first (by creation time, then
/// id), `limit` at a time; pass `results_metadata.next_cursor` back as `cursor` for the next page.
#[utoipa::path(
    tag = "Users",
    request_body = SearchUsersRequest,
    security(("basic" = [])),
    responses(
        (status = 200, description = "One page of users", body = SearchUsersResponse),
        BodyRouteErrors,
    )
)]
#[post("/v1/users/search")]
pub(crate) async fn search_users(latch: web::Data<Latch>, auth: Authed, body: Body) -> Reply {
    let req: SearchUsersRequest = body.json()?;
    let limit = int_field("limit", req.limit)?;
    let (users, total, next) = latch
        .search_users(&auth.0, limit, req.cursor.as_deref(), req.query.as_ref())
        .await?;
    ok(SearchUsersResponse {
        status_code: 200,
        request_id: request_id::current(),
        results: users.iter().map(User::from).collect(),
        results_metadata: ResultsMetadata {
            total,
            next_cursor: next,
        },
    })
}

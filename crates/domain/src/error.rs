//! The one error type every service returns. Each variant knows its Stytch `error_type`, its
//! HTTP status and its message, so the mapping lives in plain code (and one table test) and the
//! HTTP layer only has to render it (spec §3, §5.1, §5.15).

use crate::ids::Environment;

/// Everything that can go wrong in Latch, named after Stytch's `error_type`s.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unauthorized credentials")]
    Unauthorized,
    /// Malformed JSON, a wrong JSON type or a missing field; the text names the field.
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("request body too large")]
    RequestTooLarge,
    #[error("route not found")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("invalid user id")]
    InvalidUserId,
    #[error("user not found")]
    UserNotFound,
    #[error("invalid external id")]
    InvalidExternalId,
    #[error("id of the other environment")]
    WrongEnvironment { id: Environment },
    #[error("invalid email")]
    InvalidEmail,
    #[error("invalid phone number")]
    InvalidPhoneNumber,
    #[error("duplicate email")]
    DuplicateEmail,
    #[error("duplicate phone number")]
    DuplicatePhoneNumber,
    #[error("duplicate external id")]
    DuplicateUserExternalId,
    #[error("neither email nor phone number")]
    InvalidCreateUserRequest,
    #[error("metadata too large")]
    MetadataTooLarge,
    #[error("metadata has too many keys")]
    MetadataTooManyKeys,
    #[error("active totp exists")]
    ActiveTotpExists,
    #[error("invalid expiration")]
    InvalidExpiration,
    #[error("invalid totp code")]
    InvalidTotpCode,
    #[error("wrong totp code")]
    UnableToAuthenticateTotp,
    #[error("totp code replayed")]
    TotpCodeAlreadyAuthenticated,
    #[error("recovery code used as totp code")]
    RecoveryCodeUsedAsTotpCode,
    #[error("totp not found")]
    TotpNotFound,
    #[error("no totp for user")]
    TotpsNotFoundForUser,
    #[error("invalid totp id")]
    InvalidTotpId,
    #[error("invalid recovery code")]
    InvalidRecoveryCode,
    #[error("wrong or spent recovery code")]
    UnableToAuthenticateRecoveryCode,
    #[error("totp code used as recovery code")]
    TotpCodeUsedAsRecoveryCode,
    #[error("invalid session duration")]
    InvalidSessionDurationMinutes,
    #[error("session not found")]
    SessionNotFound,
    #[error("invalid session token")]
    InvalidSessionToken,
    #[error("unparseable session jwt")]
    UnableToParseSessionJwt,
    #[error("custom claims too large")]
    CustomClaimsTooLarge,
    #[error("both session_token and session_jwt")]
    TooManySessionArguments,
    #[error("neither session_token nor session_jwt")]
    NoSessionArguments,
    #[error("more than one of session_id, session_token, session_jwt")]
    TooManySessionRevokeArguments,
    #[error("none of session_id, session_token, session_jwt")]
    NoSessionRevokeArguments,
    #[error("project not found")]
    ProjectNotFound,
    #[error("search limit out of range")]
    UserSearchInvalidLimit,
    #[error("search cursor invalid")]
    UserSearchInvalidCursor,
    #[error("search filter name not recognised")]
    UserSearchFilterNameNotRecognized(String),
    #[error("search filter not supported")]
    UserSearchFilterNotSupported(String),
    #[error("search filter value invalid")]
    UserSearchInvalidFilterValue(String),
    /// The user is locked after too many consecutive failures (spec §5.16).
    #[error("user locked")]
    UserLocked { retry_after_secs: u64 },
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable")]
    ServiceUnavailable,
    /// An infrastructure failure; the cause is logged once and never returned to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps any infrastructure error.
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(e.into())
    }

    /// The lock error for a lock that ends at `until` (Unix seconds), seen at `now`.
    pub fn user_locked(until: i64, now: i64) -> Self {
        Error::UserLocked {
            retry_after_secs: std::cmp::max(u64::try_from(until - now).unwrap_or(0), 1),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        use Error::*;
        match self {
            Unauthorized | UnableToAuthenticateTotp | UnableToAuthenticateRecoveryCode => 401,
            RouteNotFound | UserNotFound | TotpNotFound | TotpsNotFoundForUser | SessionNotFound
            | ProjectNotFound => 404,
            MethodNotAllowed => 405,
            RequestTooLarge => 413,
            UserLocked { .. } | TooManyRequests { .. } => 429,
            ServiceUnavailable => 503,
            Internal(_) => 500,
            BadRequest(_)
            | InvalidUserId
            | InvalidExternalId
            | WrongEnvironment { .. }
            | InvalidEmail
            | InvalidPhoneNumber
            | DuplicateEmail
            | DuplicatePhoneNumber
            | DuplicateUserExternalId
            | InvalidCreateUserRequest
            | MetadataTooLarge
            | MetadataTooManyKeys
            | ActiveTotpExists
            | InvalidExpiration
            | InvalidTotpCode
            | TotpCodeAlreadyAuthenticated
            | RecoveryCodeUsedAsTotpCode
            | InvalidTotpId
            | InvalidRecoveryCode
            | TotpCodeUsedAsRecoveryCode
            | InvalidSessionDurationMinutes
            | InvalidSessionToken
            | UnableToParseSessionJwt
            | CustomClaimsTooLarge
            | TooManySessionArguments
            | NoSessionArguments
            | TooManySessionRevokeArguments
            | NoSessionRevokeArguments
            | UserSearchInvalidLimit
            | UserSearchInvalidCursor
            | UserSearchFilterNameNotRecognized(_)
            | UserSearchFilterNotSupported(_)
            | UserSearchInvalidFilterValue(_) => 400,
        }
    }

    /// Stytch's machine-readable `error_type`.
    pub fn error_type(&self) -> &'static str {
        use Error::*;
        match self {
            Unauthorized => "unauthorized_credentials",
            BadRequest(_) => "bad_request",
            RequestTooLarge => "request_too_large",
            RouteNotFound => "route_not_found",
            MethodNotAllowed => "method_not_allowed",
            InvalidUserId => "invalid_user_id",
            UserNotFound => "user_not_found",
            InvalidExternalId => "invalid_external_id",
            WrongEnvironment {
                id: Environment::Live,
            } => "live_id_used_in_test_environment",
            WrongEnvironment {
                id: Environment::Test,
            } => "test_id_used_in_live_environment",
            InvalidEmail => "invalid_email",
            InvalidPhoneNumber => "invalid_phone_number",
            DuplicateEmail => "duplicate_email",
            DuplicatePhoneNumber => "duplicate_phone_number",
            DuplicateUserExternalId => "duplicate_user_external_id",
            InvalidCreateUserRequest => "invalid_create_user_request",
            MetadataTooLarge => "metadata_too_large",
            MetadataTooManyKeys => "metadata_too_many_keys",
            ActiveTotpExists => "active_totp_exists",
            InvalidExpiration => "invalid_expiration",
            InvalidTotpCode => "invalid_totp_code",
            UnableToAuthenticateTotp => "unable_to_authenticate_totp",
            TotpCodeAlreadyAuthenticated => "totp_code_already_authenticated",
            RecoveryCodeUsedAsTotpCode => "recovery_code_used_as_totp_code",
            TotpNotFound => "totp_not_found",
            TotpsNotFoundForUser => "totps_not_found_for_user",
            InvalidTotpId => "invalid_totp_id",
            InvalidRecoveryCode => "invalid_recovery_code",
            UnableToAuthenticateRecoveryCode => "unable_to_authenticate_recovery_code",
            TotpCodeUsedAsRecoveryCode => "totp_code_used_as_recovery_code",
            InvalidSessionDurationMinutes => "invalid_session_duration_minutes",
            SessionNotFound => "session_not_found",
            InvalidSessionToken => "invalid_session_token",
            UnableToParseSessionJwt => "unable_to_parse_session_jwt",
            CustomClaimsTooLarge => "custom_claims_too_large",
            TooManySessionArguments => "too_many_session_arguments",
            NoSessionArguments => "no_session_arguments",
            TooManySessionRevokeArguments => "too_many_session_revoke_arguments",
            NoSessionRevokeArguments => "no_session_revoke_arguments",
            ProjectNotFound => "project_not_found",
            UserSearchInvalidLimit => "user_search_invalid_limit",
            UserSearchInvalidCursor => "user_search_invalid_cursor",
            UserSearchFilterNameNotRecognized(_) => "user_search_filter_name_not_recognized",
            UserSearchFilterNotSupported(_) => "user_search_filter_not_supported",
            UserSearchInvalidFilterValue(_) => "user_search_invalid_filter_value",
            UserLocked { .. } => "user_lock_limit_reached",
            TooManyRequests { .. } => "too_many_requests",
            ServiceUnavailable => "service_unavailable",
            Internal(_) => "internal_server_error",
        }
    }

    /// The human message: one short English sentence per `error_type`.
    pub fn message(&self) -> String {
        use Error::*;
        let s = match self {
            BadRequest(detail) => return format!("The request is malformed: {detail}."),
            UserSearchFilterNameNotRecognized(n) => {
                return format!("The search filter {n:?} is not recognised.");
            }
            UserSearchFilterNotSupported(n) => {
                return format!("The search filter {n} is not supported: Latch has no such factor.");
            }
            UserSearchInvalidFilterValue(detail) => return format!("The search query is invalid: {detail}."),
            Unauthorized => "Unauthorized credentials.",
            RequestTooLarge => "The request body is larger than the 1 MiB limit.",
            RouteNotFound => "The requested route does not exist.",
            MethodNotAllowed => "This route does not accept that HTTP method.",
            InvalidUserId => "user_id format is invalid.",
            UserNotFound => "User could not be found.",
            InvalidExternalId => {
                "external_id must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '-' or '|', and must not start with user-test- or user-live-."
            }
            WrongEnvironment {
                id: Environment::Live,
            } => "A live id was used with a test project; use an id of the test environment.",
            WrongEnvironment {
                id: Environment::Test,
            } => "A test id was used with a live project; use an id of the live environment.",
            InvalidEmail => "Email format is invalid.",
            InvalidPhoneNumber => "Phone number format is invalid; use E.164, for example +15555550100.",
            DuplicateEmail => "A user with this email already exists in this project.",
            DuplicatePhoneNumber => "A user with this phone number already exists in this project.",
            DuplicateUserExternalId => "A user with this external_id already exists in this project.",
            InvalidCreateUserRequest => "A user needs an email or a phone_number.",
            MetadataTooLarge => "Metadata must be at most 4 KB.",
            MetadataTooManyKeys => "Metadata must have at most 20 top-level keys.",
            ActiveTotpExists => {
                "Cannot create a new TOTP for the specified user since the user already has an active TOTP. Users may only have one active TOTP at a time."
            }
            InvalidExpiration => "expiration_minutes must be between 5 and 1440.",
            InvalidTotpCode => "totp_code must be exactly 6 digits.",
            UnableToAuthenticateTotp => "The TOTP code could not be authenticated.",
            TotpCodeAlreadyAuthenticated => {
                "This TOTP code has already been authenticated. Please attempt with the next generated code."
            }
            RecoveryCodeUsedAsTotpCode => {
                "A recovery code was sent as a TOTP code; use the recover endpoint for recovery codes."
            }
            TotpNotFound => "TOTP could not be found.",
            TotpsNotFoundForUser => "The user has no usable TOTP.",
            InvalidTotpId => "totp_id format is invalid.",
            InvalidRecoveryCode => "recovery_code must look like xxxx-xxxx-xxxx (letters a-z and digits).",
            UnableToAuthenticateRecoveryCode => "The recovery code could not be authenticated.",
            TotpCodeUsedAsRecoveryCode => {
                "A TOTP code was sent as a recovery code; use the authenticate endpoint for TOTP codes."
            }
            InvalidSessionDurationMinutes => "session_duration_minutes must be between 5 and 527040.",
            SessionNotFound => "Session could not be found; it may have expired or been revoked.",
            InvalidSessionToken => "session_token format is invalid.",
            UnableToParseSessionJwt => "session_jwt could not be parsed as an RS256 JWT.",
            CustomClaimsTooLarge => "session_custom_claims must be at most 4 KB.",
            TooManySessionArguments => "Send session_token or session_jwt, not both.",
            NoSessionArguments => "Send a session_token or a session_jwt.",
            TooManySessionRevokeArguments => "Send exactly one of session_id, session_token and session_jwt.",
            NoSessionRevokeArguments => "Send one of session_id, session_token and session_jwt.",
            ProjectNotFound => "Project could not be found.",
            UserSearchInvalidLimit => "limit must be between 1 and 1000.",
            UserSearchInvalidCursor => "cursor is not one this project's searches returned.",
            UserLocked { .. } => {
                "The user has been locked out due to too many failed authentication attempts. Please try again later."
            }
            TooManyRequests { .. } => "Too many requests have been made.",
            ServiceUnavailable => "A service Latch depends on is unavailable; try again shortly.",
            Internal(_) => "Something went wrong on the server; the request id identifies it in the logs.",
        };
        s.to_owned()
    }

    /// Seconds a client should wait before retrying, for the 429s.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Error::UserLocked { retry_after_secs } | Error::TooManyRequests { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            _ => None,
        }
    }

    /// Whether this error is a failed authentication attempt that counts towards the lock
    /// (spec §5.16): wrong codes, replays and spent recovery codes; never malformed input.
    pub fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            Error::UnableToAuthenticateTotp
                | Error::TotpCodeAlreadyAuthenticated
                | Error::UnableToAuthenticateRecoveryCode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_sentence_and_a_consistent_status() {
        let all = [
            Error::Unauthorized,
            Error::BadRequest("field `user_id` is missing".into()),
            Error::RequestTooLarge,
            Error::RouteNotFound,
            Error::MethodNotAllowed,
            Error::InvalidUserId,
            Error::UserNotFound,
            Error::WrongEnvironment {
                id: Environment::Live,
            },
            Error::WrongEnvironment {
                id: Environment::Test,
            },
            Error::ActiveTotpExists,
            Error::UnableToAuthenticateTotp,
            Error::TotpCodeAlreadyAuthenticated,
            Error::UserLocked { retry_after_secs: 5 },
            Error::Internal("db down".into()),
        ];
        for e in &all {
            let m = e.message();
            assert!(m.ends_with('.'), "{m}");
            assert!(!e.error_type().is_empty());
            assert!((400..600).contains(&e.status()));
        }
        assert_eq!(all[7].error_type(), "live_id_used_in_test_environment");
        assert_eq!(all[8].error_type(), "test_id_used_in_live_environment");
        assert_eq!(Error::UserLocked { retry_after_secs: 1 }.status(), 429);
        assert_eq!(Error::UnableToAuthenticateTotp.status(), 401);
        assert_eq!(Error::TotpCodeAlreadyAuthenticated.status(), 400);
        assert!(
            !Error::Internal("secret detail".into())
                .message()
                .contains("secret")
        );
    }

    #[test]
    fn only_wrong_or_replayed_codes_count_towards_the_lock() {
        assert!(Error::UnableToAuthenticateTotp.counts_as_failure());
        assert!(Error::TotpCodeAlreadyAuthenticated.counts_as_failure());
        assert!(Error::UnableToAuthenticateRecoveryCode.counts_as_failure());
        assert!(!Error::InvalidTotpCode.counts_as_failure());
        assert!(!Error::InvalidRecoveryCode.counts_as_failure());
    }
}

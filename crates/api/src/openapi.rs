//! The OpenAPI document's shared parts: the root (info, tags, Basic auth, the error schema
//! registered once) and the error responses every route can give, each with an example of the
//! body Latch really returns. Paths come from the route registrations (utoipa-actix-web).

use crate::error::ErrorBody;
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latch",
        description = "Self-hosted TOTP two-factor authentication speaking Stytch's consumer API. \
Point the official Stytch SDKs (`stytch` on npm and PyPI) at this server. Every `/v1` route \
except the JWKS takes HTTP Basic `project_id:secret`. Errors use Stytch's envelope: \
`status_code`, `request_id`, `error_type`, `error_message`, `error_url`.",
    ),
    components(schemas(ErrorBody)),
    modifiers(&BasicAuth),
    tags(
        (name = "Users", description = "Users and their factors"),
        (name = "TOTP", description = "Time-based one-time passwords and recovery codes"),
        (name = "Sessions", description = "Sessions minted by a successful authentication, and their JWT keys"),
    )
)]
pub(crate) struct ApiDoc;

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "project_id as the user name, the project secret as the password",
                    ))
                    .build(),
            ),
        );
    }
}

/// Says in the schemas what the handlers require of combinations of fields, so a request the
/// schema accepts is one Latch accepts: `POST /v1/users` needs an email or a phone number
/// (`anyOf`); session routes take exactly one way of naming a session (`oneOf`). Applied after
/// the paths (and their schemas) are collected.
pub(crate) fn refine(openapi: &mut utoipa::openapi::OpenApi) {
    require(openapi, "CreateUserRequest", &["email", "phone_number"], false);
    require(
        openapi,
        "AuthenticateSessionRequest",
        &["session_token", "session_jwt"],
        true,
    );
    require(
        openapi,
        "RevokeSessionRequest",
        &["session_id", "session_token", "session_jwt"],
        true,
    );
    at_most_one(
        openapi,
        "AuthenticateTotpRequest",
        ["session_token", "session_jwt"],
    );
    at_most_one(openapi, "RecoverTotpRequest", ["session_token", "session_jwt"]);
    search_operands(openapi);
}

/// Each search filter with the value it takes (`oneOf`, keyed by `filter_name`), so only
/// queries Latch runs are schema-valid.
fn search_operands(openapi: &mut utoipa::openapi::OpenApi) {
    use serde_json::json;
    // Dates the server always parses: RFC 3339 UTC, days 01-28 of any month.
    let time = json!({"type": "string",
        "pattern": "^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$",
        "example": "2026-01-01T00:00:00Z"});
    let list = json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1000});
    let text = json!({"type": "string", "minLength": 1, "maxLength": 200});
    let flag = json!({"type": "boolean"});
    let filters = [
        ("created_at_greater_than", time.clone()),
        ("created_at_less_than", time.clone()),
        (
            "created_at_between",
            json!({"type": "object", "required": ["greater_than", "less_than"],
            "properties": {"greater_than": time.clone(), "less_than": time}}),
        ),
        ("status", json!({"type": "string", "enum": ["active", "pending"]})),
        ("user_id", list.clone()),
        ("full_name_fuzzy", text.clone()),
        ("email_address", list.clone()),
        ("email_address_fuzzy", text.clone()),
        ("email_id", list.clone()),
        ("email_verified", flag.clone()),
        ("phone_number", list.clone()),
        ("phone_number_fuzzy", text),
        ("phone_id", list.clone()),
        ("phone_verified", flag.clone()),
        ("totp_id", list),
        ("totp_verified", flag),
    ];
    let one_of: Vec<serde_json::Value> = filters
        .into_iter()
        .map(|(name, value)| {
            json!({"type": "object", "required": ["filter_name", "filter_value"],
                "properties": {"filter_name": {"type": "string", "enum": [name]}, "filter_value": value}})
        })
        .collect();
    let operand =
        json!({"description": "One search condition: a filter and the value it takes.", "oneOf": one_of});
    let query = json!({"type": "object", "description": "No query, or no operands, matches every user.",
        "properties": {
            "operator": {"type": ["string", "null"], "enum": ["AND", "OR", null], "description": "AND (default) or OR."},
            "operands": {"type": ["array", "null"], "maxItems": 50, "description": "The conditions (at most 50); none matches every user.", "items": {"$ref": "#/components/schemas/SearchOperand"}}}});
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    for (name, schema) in [("SearchOperand", operand), ("SearchQuery", query)] {
        if let Ok(s) = serde_json::from_value::<RefOr<utoipa::openapi::schema::Schema>>(schema) {
            components.schemas.insert(name.into(), s);
        }
    }
}

fn require(openapi: &mut utoipa::openapi::OpenApi, schema: &str, fields: &[&str], exactly_one: bool) {
    use utoipa::openapi::schema::{AnyOfBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, Type};
    let branches = fields.iter().map(|f| {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .property(*f, Object::with_type(Type::String))
                .required(*f)
                .build(),
        ))
    });
    let choice = if exactly_one {
        Schema::OneOf(branches.fold(OneOfBuilder::new(), |b, x| b.item(x)).build())
    } else {
        Schema::AnyOf(branches.fold(AnyOfBuilder::new(), |b, x| b.item(x)).build())
    };
    constrain(openapi, schema, choice);
}

/// At most one of two optional fields may carry a value: `anyOf` "the first is absent or null"
/// or "the second is".
fn at_most_one(openapi: &mut utoipa::openapi::OpenApi, schema: &str, fields: [&str; 2]) {
    use utoipa::openapi::schema::{AnyOfBuilder, Object, ObjectBuilder, Schema, Type};
    let any = fields.iter().fold(AnyOfBuilder::new(), |b, f| {
        b.item(RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .property(*f, Object::with_type(Type::Null))
                .build(),
        )))
    });
    constrain(openapi, schema, Schema::AnyOf(any.build()));
}

/// Replaces component `schema` with `allOf: [schema, extra]`.
fn constrain(openapi: &mut utoipa::openapi::OpenApi, schema: &str, extra: utoipa::openapi::schema::Schema) {
    use utoipa::openapi::schema::{AllOfBuilder, Schema};
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    let Some(original) = components.schemas.remove(schema) else {
        return;
    };
    let combined = AllOfBuilder::new().item(original).item(RefOr::T(extra)).build();
    components
        .schemas
        .insert(schema.into(), RefOr::T(Schema::AllOf(combined)));
}

/// One documented error status, with Latch's own body for `e` as the example (status, type
/// and message all come from the error itself, so the document cannot drift from the code).
fn error(description: &str, e: domain::Error) -> (String, RefOr<Response>) {
    let status = e.status();
    let error_type = e.error_type();
    let example = json!({
        "status_code": status,
        "request_id": "request-id-test-b05c992f-ebdc-489d-a754-c7e70ba13141",
        "error_type": error_type,
        "error_message": e.message(),
        "error_url": format!("https://stytch.com/docs/api/errors/{status}#{error_type}"),
    });
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .example(Some(example))
            .build(),
    );
    if status == 429 {
        response = response.header(
            "Retry-After",
            utoipa::openapi::HeaderBuilder::new()
                .schema(Some(utoipa::openapi::schema::Object::with_type(
                    utoipa::openapi::schema::Type::Integer,
                )))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    (status.to_string(), response.build().into())
}

/// The errors every route can give whatever it does.
fn common() -> Vec<(String, RefOr<Response>)> {
    use domain::Error as E;
    vec![
        error(
            "Too many requests, or the user is locked after too many failed attempts",
            E::UserLocked { retry_after_secs: 60 },
        ),
        error(
            "Server error; the request id finds it in the logs",
            E::internal("x"),
        ),
        error(
            "A service Latch needs (the database) is unreachable; retry",
            E::ServiceUnavailable,
        ),
    ]
}

/// Errors of the authenticated `/v1` routes that take a JSON body.
pub(crate) struct BodyRouteErrors;

impl IntoResponses for BodyRouteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        use domain::Error as E;
        let mut v = vec![
            error(
                "Bad input: malformed JSON, a wrong type, a missing field, or a value out of range",
                E::BadRequest("field `user_id`: missing field `user_id`".into()),
            ),
            error("Missing or wrong credentials, or a wrong code", E::Unauthorized),
            error(
                "The user, TOTP or session does not exist in this project",
                E::UserNotFound,
            ),
            error("The route does not take this method", E::MethodNotAllowed),
            error("The body is over 1 MiB", E::RequestTooLarge),
        ];
        v.extend(common());
        v.into_iter().collect()
    }
}

/// Errors of the authenticated `/v1` routes without a body (ids in the path or query).
pub(crate) struct PathRouteErrors;

impl IntoResponses for PathRouteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        use domain::Error as E;
        let mut v = vec![
            error(
                "A malformed id, or an id of the other environment",
                E::InvalidUserId,
            ),
            error("Missing or wrong credentials", E::Unauthorized),
            error("Not found in this project", E::UserNotFound),
            error("The route does not take this method", E::MethodNotAllowed),
        ];
        v.extend(common());
        v.into_iter().collect()
    }
}

/// Errors of the public JWKS route.
pub(crate) struct PublicRouteErrors;

impl IntoResponses for PublicRouteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        use domain::Error as E;
        let mut v = vec![
            error("No such project", E::ProjectNotFound),
            error("The route does not take this method", E::MethodNotAllowed),
        ];
        v.extend(common());
        v.into_iter().collect()
    }
}

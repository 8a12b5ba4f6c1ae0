//! Latch's HTTP layer: actix-web handlers speaking Stytch's wire format, the error envelope,
//! request ids, Basic auth and the OpenAPI document (collected by utoipa-actix-web from the same
//! registrations the server mounts, so there is no second list of routes).
//!
//! Depends on `domain` and HTTP crates only: never on `store`, sea-orm or Redis (architecture
//! §2); the server hands it a [`domain::service::Latch`] with the concrete store inside.

mod auth;
mod body;
pub mod dto;
mod error;
pub mod request_id;
mod routes;

use actix_web::body::BoxBody;
use actix_web::dev::{ResourceDef, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::{App, HttpRequest, HttpResponse, web};
use domain::service::Latch;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

pub use error::{ApiError, ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latch",
        description = "Self-hosted TOTP two-factor authentication speaking Stytch's consumer API. \
Point the official Stytch SDKs at this server. Every `/v1` route takes HTTP Basic \
`project_id:secret`.",
    ),
    components(schemas(ErrorBody)),
    modifiers(&BasicAuth),
    tags(
        (name = "Users", description = "Users and their factors"),
        (name = "TOTP", description = "Time-based one-time passwords and recovery codes"),
        (name = "Sessions", description = "Sessions minted by a successful authentication, and their JWT keys"),
    )
)]
struct ApiDoc;

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

/// Registers every `/v1` route (the one list the OpenAPI document is collected from).
fn register(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(routes::create_user)
        .service(routes::get_user)
        .service(routes::update_user)
        .service(routes::delete_user)
        .service(routes::delete_totp)
        .service(routes::create_totp)
        .service(routes::authenticate_totp)
        .service(routes::recovery_codes)
        .service(routes::recover_totp)
        .service(routes::authenticate_session)
        .service(routes::list_sessions)
        .service(routes::revoke_session)
        .service(routes::jwks);
}

/// The OpenAPI document, built without a server or state.
pub fn openapi() -> utoipa::openapi::OpenApi {
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(register)
        .split_for_parts()
        .1
}

/// Path templates and their methods, to tell an unknown route (404) from a wrong method (405).
struct RouteTable(Vec<(ResourceDef, Vec<Method>)>);

impl RouteTable {
    fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        RouteTable(
            doc.paths
                .paths
                .iter()
                .map(|(path, item)| {
                    let methods = [
                        (Method::GET, item.get.is_some()),
                        (Method::POST, item.post.is_some()),
                        (Method::PUT, item.put.is_some()),
                        (Method::DELETE, item.delete.is_some()),
                        (Method::PATCH, item.patch.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(m, has)| has.then_some(m))
                    .collect();
                    (ResourceDef::new(path.as_str()), methods)
                })
                .collect(),
        )
    }

    fn path_exists(&self, path: &str) -> bool {
        self.0.iter().any(|(def, _)| def.is_match(path))
    }
}

async fn fallback(req: HttpRequest, table: web::Data<RouteTable>) -> Result<HttpResponse, ApiError> {
    if table.path_exists(req.path()) {
        Err(ApiError(domain::Error::MethodNotAllowed))
    } else {
        Err(ApiError(domain::Error::RouteNotFound))
    }
}

/// The whole application for one worker: routes, request ids, fallbacks. The server adds
/// nothing but the listener.
pub fn app(
    latch: Arc<Latch>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (app, doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .app_data(web::Data::from(latch))
        .configure(register)
        .split_for_parts();
    let table = web::Data::new(RouteTable::from_openapi(&doc));
    let doc = web::Data::new(doc);
    app.app_data(table)
        .app_data(doc)
        .route("/openapi.json", web::get().to(openapi_json))
        .default_service(web::to(fallback))
        .wrap(actix_web::middleware::from_fn(request_id::middleware))
}

async fn openapi_json(doc: web::Data<utoipa::openapi::OpenApi>) -> HttpResponse {
    HttpResponse::Ok().json(doc.get_ref())
}

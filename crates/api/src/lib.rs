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
mod openapi;
mod ops;
pub use ops::{Check, Probe};
pub mod request_id;
mod routes;

pub use limits::Limits;
mod limits;

use actix_web::body::BoxBody;
use actix_web::dev::{ResourceDef, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::{App, HttpRequest, HttpResponse, web};
use domain::service::Latch;
use openapi::ApiDoc;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ErrorBody};

/// Registers every `/v1` route (the one list the OpenAPI document is collected from). actix
/// tries the routes in this order and a templated path costs a regex match, so the fixed paths
/// come first: a TOTP request would otherwise run four `/v1/users/{…}` regexes before its own
/// route (issue 8). No fixed path here matches a template with the same method.
fn register(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(routes::authenticate_totp)
        .service(routes::recovery_codes)
        .service(routes::recover_totp)
        .service(routes::create_totp)
        .service(routes::authenticate_session)
        .service(routes::list_sessions)
        .service(routes::revoke_session)
        .service(routes::create_user)
        .service(routes::search_users)
        .service(routes::get_user)
        .service(routes::update_user)
        .service(routes::delete_user)
        .service(routes::delete_totp)
        .service(routes::jwks);
}

/// The OpenAPI document, built without a server or state.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(register)
        .split_for_parts()
        .1;
    openapi::refine(&mut doc);
    doc
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

    /// The methods a path takes, if it is a route at all. A static route that matches wins over
    /// templated ones (`/v1/users/search` is not `/v1/users/{user_id}`), as in the document.
    fn methods(&self, path: &str) -> Option<Vec<Method>> {
        let matching: Vec<&(ResourceDef, Vec<Method>)> =
            self.0.iter().filter(|(def, _)| def.is_match(path)).collect();
        let exact: Vec<&&(ResourceDef, Vec<Method>)> = matching
            .iter()
            .filter(|(def, _)| def.pattern().is_some_and(|p| !p.contains('{')))
            .collect();
        let found: Vec<Method> = if exact.is_empty() {
            matching.iter().flat_map(|(_, m)| m.iter().cloned()).collect()
        } else {
            exact.iter().flat_map(|(_, m)| m.iter().cloned()).collect()
        };
        (!found.is_empty()).then_some(found)
    }
}

/// Unknown routes get 404 `route_not_found`; a known route with another method gets 405
/// `method_not_allowed` with an `Allow` header.
async fn fallback(req: HttpRequest, table: web::Data<RouteTable>) -> HttpResponse {
    use actix_web::ResponseError;
    match table.methods(req.path()) {
        Some(methods) => {
            let mut res = ApiError(domain::Error::MethodNotAllowed).error_response();
            let allow = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allow) {
                res.headers_mut().insert(actix_web::http::header::ALLOW, v);
            }
            res
        }
        None => ApiError(domain::Error::RouteNotFound).error_response(),
    }
}

/// The whole application for one worker: routes, request ids, fallbacks. The server adds
/// nothing but the listener.
pub fn app(
    latch: Arc<Latch>,
    limits: Arc<Limits>,
    probe: Arc<dyn Probe>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (app, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .app_data(web::Data::from(latch))
        .app_data(web::Data::from(limits))
        .configure(register)
        .split_for_parts();
    openapi::refine(&mut doc);
    let table = web::Data::new(RouteTable::from_openapi(&doc));
    app.app_data(table)
        .app_data(web::Data::from(probe))
        .configure(ops::register)
        // Swagger UI from the binary (its assets are vendored at build time, no network).
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", doc))
        .route("/docs", web::get().to(docs_redirect))
        .default_service(web::to(fallback))
        .wrap(actix_web::middleware::from_fn(request_id::middleware))
}

async fn docs_redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

//! The local HTTP endpoint: `/healthz` (200 when the loop is in sync, 503 with the reason when
//! not) and `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::{Metrics, SharedStatus, lock};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    status: SharedStatus,
}

pub fn router(metrics: Arc<Metrics>, status: SharedStatus) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, status })
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let status = lock(&state.status).clone();
    if status.standby {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "standby: another agent holds this node's lease\n".to_string(),
        );
    }
    match (status.ready, status.problem) {
        (_, Some(problem)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")),
        (false, None) => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_string()),
        (true, None) => (
            StatusCode::OK,
            format!("ok revision {}\n", status.applied_revision),
        ),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

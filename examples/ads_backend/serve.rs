//! Serving until told to stop. Ctrl-C, or SIGTERM (what Kubernetes, systemd and `docker stop`
//! send), stops the listener; requests in flight finish, then the task manager drains.

use std::{net::SocketAddr, time::Duration};

use axum::Router;
use perf::PerformanceOptimizer;
use tokio::net::TcpListener;

/// How long running tasks get to finish once the server has stopped.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until a stop signal, then drains `optimizer`'s tasks.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    optimizer: &'static PerformanceOptimizer,
) -> std::io::Result<()> {
    // Installed before the first request: from here on SIGTERM no longer kills the process.
    let stop = StopSignal::install()?;
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop.received())
    .await?;
    let report = optimizer.tasks().shutdown(DRAIN).await;
    tracing::info!(drained = report.drained, "stopped");
    Ok(())
}

/// Ctrl-C, and SIGTERM on Unix.
struct StopSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    /// Resolves when either signal arrives.
    async fn received(self) {
        #[cfg(unix)]
        let terminate = {
            let mut terminate = self.terminate;
            async move { terminate.recv().await }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<Option<()>>();
        tokio::pin!(terminate);
        let signal = tokio::select! {
            result = tokio::signal::ctrl_c() => match result {
                Ok(()) => "Ctrl-C",
                // Without Ctrl-C, SIGTERM still stops the server.
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for Ctrl-C");
                    (&mut terminate).await;
                    "SIGTERM"
                }
            },
            _ = &mut terminate => "SIGTERM",
        };
        tracing::info!(
            signal,
            "stopping: requests in flight finish, then tasks drain"
        );
    }
}

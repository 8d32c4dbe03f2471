//! A cloneable shutdown signal (SIGTERM/SIGINT, or a test asking the pipeline to stop).
use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct ShutdownTrigger {
    sender: std::sync::Arc<watch::Sender<bool>>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (
        ShutdownTrigger {
            sender: std::sync::Arc::new(sender),
        },
        Shutdown { receiver },
    )
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.sender.send(true);
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once shutdown has been requested (immediately if it already was).
    pub async fn wait(&mut self) {
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }
}

/// Triggers `trigger` on the first SIGTERM or SIGINT.
pub fn on_signals(trigger: ShutdownTrigger) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        }
        trigger.trigger();
    });
}

/// Like `on_signals`, and returns a trigger the caller can also pull.
pub fn on_signals_keep(trigger: ShutdownTrigger) -> ShutdownTrigger {
    on_signals(trigger.clone());
    trigger
}

//! The local calling service: a Graph-compatible calling API with its own identity provider,
//! signed notifications and synthetic participants, so that a bot runs and is tested with no
//! tenant and no cloud.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig::default()).await?;
//! println!("Graph API at {}", emu.graph_url());
//! println!("tokens at {}", emu.token_url(emulator::scenario::DEFAULT_TENANT));
//! emu.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod calls;
mod dashboard;
mod describe;
mod errors;
mod graph;
pub mod identity;
mod incoming;
mod join;
mod lookup;
mod media;
mod middleware;
mod notify;
mod recordings;
pub mod scenario;
mod server;
mod state;
pub mod wav;

pub use calls::CallResult;
pub use server::{Emulator, EmulatorConfig, StartError};
pub use state::{LogEntry, LogKind};

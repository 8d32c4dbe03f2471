//! Pure domain logic: provinces, frameworks, event types and time. No I/O here.
pub mod event;
pub mod framework;
pub mod province;
pub mod time;

pub use event::{
    AgencyLevel, Channel, CodeSystem, HotlineChannel, HotlineEvent, HotlineEventType, Rating,
    RespondentType, SurveySubmission,
};
pub use framework::{Framework, FrameworkCatalog, FrameworkError};
pub use province::{Province, ProvinceRegistry};

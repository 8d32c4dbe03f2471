//! Which contract a topic carries: the one name both decoders (JSON and Avro) share.

/// Which contract a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Survey,
    Hotline,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Survey => "survey",
            EventKind::Hotline => "hotline",
        }
    }
}

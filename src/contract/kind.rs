//! Which contract a topic carries: the one name both decoders (JSON and Avro) share, and
//! the one list of kinds that the consumer loop, the batch tallies, the publishers and the
//! configuration's topics are built from. A new event type is one more variant here (with
//! its arms in `as_str` and `stream_name`, its place in `ALL` and its topic in
//! `config::KafkaConfig::topic`).

/// Which contract a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Survey,
    Hotline,
}

impl EventKind {
    /// Every kind, in the order of their discriminants (`kind as usize` indexes it).
    pub const ALL: [EventKind; 2] = [EventKind::Survey, EventKind::Hotline];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Survey => "survey",
            EventKind::Hotline => "hotline",
        }
    }

    /// The name of the kind's stream of events: the default topic's suffix, the kind's
    /// section in the import configuration (`[import.surveys]`), the simulator's file
    /// (`<name>.ndjson`) and the label of per-stream metrics.
    pub fn stream_name(self) -> &'static str {
        match self {
            EventKind::Survey => "surveys",
            EventKind::Hotline => "hotline",
        }
    }
}

/// One value per kind, in a fixed array: indexing by kind is an array access (no map, no
/// allocation), for what the hot path looks up per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerKind<T>([T; EventKind::ALL.len()]);

impl<T> PerKind<T> {
    /// The value of each kind from `f`.
    pub fn from_fn(mut f: impl FnMut(EventKind) -> T) -> Self {
        Self(EventKind::ALL.map(&mut f))
    }

    /// The value of each kind from `f`, in the order of `EventKind::ALL`, or the first
    /// error (`f` is not called for the kinds after it).
    pub fn try_from_fn<E>(mut f: impl FnMut(EventKind) -> Result<T, E>) -> Result<Self, E> {
        let mut values = Vec::with_capacity(EventKind::ALL.len());
        for kind in EventKind::ALL {
            values.push(f(kind)?);
        }
        match values.try_into() {
            Ok(values) => Ok(Self(values)),
            Err(_) => unreachable!("one value per kind"),
        }
    }

    /// Each kind with its value, in the order of `EventKind::ALL`.
    pub fn iter(&self) -> impl Iterator<Item = (EventKind, &T)> {
        EventKind::ALL.into_iter().zip(self.0.iter())
    }

    /// The values, in the order of `EventKind::ALL`.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

impl<T: Default> Default for PerKind<T> {
    fn default() -> Self {
        Self::from_fn(|_| T::default())
    }
}

impl<T> std::ops::Index<EventKind> for PerKind<T> {
    type Output = T;

    fn index(&self, kind: EventKind) -> &T {
        &self.0[kind as usize]
    }
}

impl<T> std::ops::IndexMut<EventKind> for PerKind<T> {
    fn index_mut(&mut self, kind: EventKind) -> &mut T {
        &mut self.0[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order_so_a_kind_indexes_its_own_value() {
        for (i, kind) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i);
        }
        for (i, encoding) in crate::contract::Encoding::ALL.into_iter().enumerate() {
            assert_eq!(encoding as usize, i);
        }
        let names = PerKind::from_fn(EventKind::as_str);
        for kind in EventKind::ALL {
            assert_eq!(names[kind], kind.as_str());
        }
        let listed: Vec<_> = names.iter().map(|(kind, name)| (kind, *name)).collect();
        assert_eq!(
            listed,
            [
                (EventKind::Survey, "survey"),
                (EventKind::Hotline, "hotline")
            ]
        );
    }
}

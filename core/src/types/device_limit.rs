//! The devices an API token may act on: every device of its owner, or only some. Stored as a
//! comma-separated list of ids (empty: every device), shown as `null` or a list of ids.
//!
//! A limit only ever names devices; a device deleted later simply matches nothing, so a limited
//! token can never widen to every device.

use std::fmt;

use super::DeviceId;

/// Every device (`None`) or only these (never empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeviceLimit(Option<Vec<DeviceId>>);

impl DeviceLimit {
    /// Only `devices`, sorted and without repeats; every device if `devices` is empty.
    pub fn only(devices: &[DeviceId]) -> DeviceLimit {
        if devices.is_empty() {
            return DeviceLimit(None);
        }
        let mut ids = devices.to_vec();
        ids.sort();
        ids.dedup();
        DeviceLimit(Some(ids))
    }

    /// The devices it is limited to, or `None` for every device.
    pub fn devices(&self) -> Option<&[DeviceId]> {
        self.0.as_deref()
    }

    /// Whether it may act on `device`.
    pub fn allows(&self, device: DeviceId) -> bool {
        self.0.as_ref().is_none_or(|ids| ids.binary_search(&device).is_ok())
    }

    /// Whether it reaches no further than `other` does.
    pub fn within(&self, other: &DeviceLimit) -> bool {
        match (&self.0, &other.0) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(_)) => mine.iter().all(|d| other.allows(*d)),
        }
    }
}

impl fmt::Display for DeviceLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = self.0.iter().flatten().map(|d| d.0.to_string()).collect::<Vec<_>>();
        f.write_str(&ids.join(","))
    }
}

impl TryFrom<String> for DeviceLimit {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        let ids = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map(DeviceId).map_err(|_| format!("`{s}` is not a device id")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DeviceLimit::only(&ids))
    }
}

impl serde::Serialize for DeviceLimit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_round_trips_and_never_widens() {
        let limit = DeviceLimit::only(&[DeviceId(5), DeviceId(3), DeviceId(5)]);
        assert_eq!(limit.to_string(), "3,5");
        assert_eq!(DeviceLimit::try_from(limit.to_string()).unwrap(), limit);
        assert!(limit.allows(DeviceId(3)) && !limit.allows(DeviceId(4)));
        assert_eq!(serde_json::to_string(&limit).unwrap(), "[3,5]");

        let every = DeviceLimit::try_from(String::new()).unwrap();
        assert!(every.allows(DeviceId(4)) && every.devices().is_none());
        assert_eq!(serde_json::to_string(&every).unwrap(), "null");

        assert!(limit.within(&every) && !every.within(&limit));
        assert!(DeviceLimit::only(&[DeviceId(3)]).within(&limit));
        assert!(!DeviceLimit::only(&[DeviceId(4)]).within(&limit));
        assert!(DeviceLimit::try_from("3,x".to_owned()).is_err());
    }
}

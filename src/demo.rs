//! Demo mode: a simulated WhatsApp network inside the process, and the "phone" the dashboard uses.

use std::sync::Arc;

use wafleet_core::link::{LinkError, SimulatedPhones};
use wafleet_core::types::PhoneNumber;
use wafleet_sim::{ControlClient, SimConfig, SimHandle};

/// A number the demo network has no account for, so "not on WhatsApp" can be seen.
pub const NOT_ON_WHATSAPP: &str = "+60129990000";

/// Contacts that write to a freshly linked demo phone: (number, name).
const CONTACTS: [(&str, &str); 3] = [
    ("+60191000001", "Aisyah"),
    ("+60191000002", "Ben"),
    ("+60191000003", "Chandra"),
];

/// Starts the in-process simulator on a free loopback port with demo-friendly pacing.
pub async fn start() -> anyhow::Result<SimHandle> {
    // Defaults only: the simulator's own variables are for `wafleet sim`, not for the demo.
    let config = SimConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..SimConfig::default()
    };
    let handle = wafleet_sim::start(config).await?;
    let control = handle.control();
    control
        .set_number(&wafleet_sim::control::NumberRule {
            phone: NOT_ON_WHATSAPP.into(),
            on_whatsapp: Some(false),
            ..Default::default()
        })
        .await?;
    // One contact is a shop, so a profile lookup has something to show.
    control
        .set_number(&wafleet_sim::control::NumberRule {
            phone: CONTACTS[0].0.into(),
            profile: wafleet_sim::control::Profile {
                about: Some("Cakes to order, open 9 to 5".into()),
                business_name: Some("Kedai Aisyah".into()),
                picture_id: Some("1651459152".into()),
                business: Some(wafleet_core::link::BusinessProfile {
                    description: "Birthday and wedding cakes, baked to order".into(),
                    email: Some("kedai.aisyah@example.com".into()),
                    address: Some("12 Jalan Bunga, Kuala Lumpur".into()),
                    websites: vec!["https://kedai-aisyah.example.com".into()],
                    categories: vec![wafleet_core::link::BusinessCategory {
                        id: "196".into(),
                        name: "Bakery".into(),
                    }],
                    hours_timezone: Some("Asia/Kuala_Lumpur".into()),
                    hours: ["mon", "tue", "wed", "thu", "sat"]
                        .into_iter()
                        .map(|day| wafleet_core::link::BusinessHours {
                            day: day.into(),
                            mode: "specific_hours".into(),
                            open_minute: Some(9 * 60),
                            close_minute: Some(17 * 60),
                        })
                        .collect(),
                }),
                ..Default::default()
            },
            ..Default::default()
        })
        .await?;
    tracing::warn!(ws = %handle.ws_url(), "DEMO MODE: devices link to a simulated WhatsApp network, not the real one");
    Ok(handle)
}

/// The simulated phones, driven through the simulator's control API.
pub struct DemoPhones {
    control: ControlClient,
}

impl DemoPhones {
    /// Phones of the simulator behind `handle`.
    pub fn new(handle: &SimHandle) -> Arc<Self> {
        Arc::new(DemoPhones {
            control: handle.control(),
        })
    }

    /// Once a phone is linked, its contacts start writing: one hello each now (and a group message,
    /// which wafleet must not store), then a message every now and then.
    async fn bring_to_life(&self, phone: &str) -> anyhow::Result<()> {
        for (number, name) in CONTACTS {
            let hello = wafleet_sim::control::InjectMessage {
                to: phone.into(),
                from: number.into(),
                chat: Default::default(),
                text: Some(format!("Hi, this is {name}. Is this still available?")),
                kind: None,
                push_name: Some(name.into()),
                media: None,
            };
            self.control.inject(&hello).await?;
        }
        let photo = wafleet_sim::control::InjectMessage {
            to: phone.into(),
            from: CONTACTS[0].0.into(),
            chat: Default::default(),
            text: Some("This one, in blue".into()),
            kind: Some(wafleet_core::link::MessageKind::Image),
            push_name: Some(CONTACTS[0].1.into()),
            media: None,
        };
        self.control.inject(&photo).await?;
        let group = wafleet_sim::control::InjectMessage {
            to: phone.into(),
            from: CONTACTS[0].0.into(),
            chat: wafleet_sim::control::ChatKind::Group,
            text: Some("A group message: wafleet keeps personal chats only".into()),
            kind: None,
            push_name: Some(CONTACTS[0].1.into()),
            media: None,
        };
        self.control.inject(&group).await?;
        let from = CONTACTS.iter().map(|(n, _)| (*n).to_owned()).collect();
        self.control.schedule(phone, 2.0, from).await
    }
}

fn transient(err: anyhow::Error) -> LinkError {
    LinkError::Transient(format!("{err:#}"))
}

#[async_trait::async_trait]
impl SimulatedPhones for DemoPhones {
    async fn scan_qr(&self, qr_code: &str, phone: &PhoneNumber) -> Result<(), LinkError> {
        self.control.scan(qr_code, phone.as_str()).await.map_err(transient)?;
        self.bring_to_life(phone.as_str()).await.map_err(transient)
    }

    async fn confirm_pair_code(&self, code: &str) -> Result<(), LinkError> {
        let paired = self.control.confirm_pair_code(code).await.map_err(transient)?;
        self.bring_to_life(&format!("+{}", paired.jid.user()))
            .await
            .map_err(transient)
    }
}

//! Read-model tables and their keys. Partition keys follow the queries (SPEC §4):
//! one delivery, one account's history, one account-month's invoice, one fleet status.

/// `deliveries`: partition = delivery id, one row → [`crate::views::DeliveryView`].
pub const DELIVERIES: &str = "deliveries";
/// `delivery_timeline`: partition = delivery id, clustering = zero-padded version.
pub const DELIVERY_TIMELINE: &str = "delivery_timeline";
/// `account_deliveries`: partition = account id, clustering = [`history_key`].
pub const ACCOUNT_DELIVERIES: &str = "account_deliveries";
/// `deliveries_by_stage`: partition = stage, clustering = [`history_key`] (operators'
/// view across accounts, e.g. every failed delivery).
pub const DELIVERIES_BY_STAGE: &str = "deliveries_by_stage";
/// `accounts`: partition = account id, one row → [`crate::views::AccountView`].
pub const ACCOUNTS: &str = "accounts";
/// `account_keys`: partition = the SHA-256 of an account's current API key, one row →
/// [`crate::views::AccountKey`] (how a query-api that folds no log tells account keys).
pub const ACCOUNT_KEYS: &str = "account_keys";
/// `invoice_trips` (private to the invoices projection): partition = delivery id.
pub const INVOICE_TRIPS: &str = "invoice_trips";
/// `invoice_lines`: partition = [`invoice_partition`], clustering = delivery id.
pub const INVOICE_LINES: &str = "invoice_lines";
/// `drones`: partition = drone id, one row → [`crate::views::DroneView`].
pub const DRONES: &str = "drones";
/// `drone_positions`: partition = [`WHOLE_FLEET`], clustering = drone id →
/// [`crate::views::DronePosition`], version = the report's time (µs). One partition, so
/// a fleet page reads its drones' positions with one scan of their id range.
pub const DRONE_POSITIONS: &str = "drone_positions";
/// The one partition of `drone_positions`.
pub const WHOLE_FLEET: &str = "fleet";
/// `fleet`: partition = drone status, clustering = drone id → the drone's
/// [`crate::views::DroneView`], so a page of one status is one scan.
pub const FLEET: &str = "fleet";

/// `projector_group` (the projector's own): one row, the id that names the consumer
/// groups of the projectors building this store.
pub const PROJECTOR_GROUP: &str = "projector_group";

/// `model_generations`: partition [`GENERATIONS`], clustering = model name, one row per
/// model → [`crate::generations::Generations`]: which generation of its tables readers
/// read, and which one a rebuild is writing.
pub const MODEL_GENERATIONS: &str = "model_generations";
/// The one partition of `model_generations`.
pub const GENERATIONS: &str = "models";

/// `dead_letters`: partition = projection name, clustering = [`dead_letter_key`], one row
/// per record the projection could not decode → [`crate::views::DeadLetter`].
pub const DEAD_LETTERS: &str = "dead_letters";

/// The layout of the rows above; a build that changes a key or a row's shape raises it,
/// and an embedded read store written in another layout is rebuilt from the log
/// (2: `fleet` rows hold `DroneDetails`, `drone_positions` is one partition).
pub const LAYOUT: u32 = 2;

/// Every table above: what a store with a schema creates ahead of time.
pub const ALL: [&str; 14] = [
    DELIVERIES,
    DELIVERY_TIMELINE,
    ACCOUNT_DELIVERIES,
    DELIVERIES_BY_STAGE,
    ACCOUNTS,
    ACCOUNT_KEYS,
    INVOICE_TRIPS,
    INVOICE_LINES,
    DRONES,
    DRONE_POSITIONS,
    FLEET,
    PROJECTOR_GROUP,
    DEAD_LETTERS,
    MODEL_GENERATIONS,
];

/// Clustering key of tables with one row per partition.
pub const SINGLE_ROW: &str = "";

pub fn timeline_key(version: u64) -> String {
    format!("{version:020}")
}

/// Orders an account's deliveries by creation time, then id.
pub fn history_key(created_at: chrono::DateTime<chrono::Utc>, delivery_id: &str) -> String {
    format!("{}/{delivery_id}", time_key(created_at))
}

/// A sortable text form of a time: microseconds since the epoch, zero-padded.
pub fn time_key(at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{:020}", at.timestamp_micros().max(0))
}

pub fn invoice_partition(account_id: &str, year: i32, month: u32) -> String {
    format!("{account_id}/{year:04}-{month:02}")
}

/// A dead letter's place in the log, sortable: topic, partition, offset.
pub fn dead_letter_key(topic: &str, partition: u32, offset: u64) -> String {
    format!("{topic}/{partition:010}/{offset:020}")
}

//! History: what each provider did, interval by interval, for the fleet (`AI_STATS`), and the
//! reports and charts made from it. Workers count their shares (`shares`), follow the
//! breakers and the mode (`timeline`), and roll up each interval once for the fleet
//! (`roller`); `report` computes a report from the rollups `read` reads back.

pub mod read;
pub mod report;
pub mod roller;
pub mod shares;
pub mod timeline;

pub use roller::Roller;
pub use shares::{SharesWriter, StatsShares};
pub use timeline::Timeline;

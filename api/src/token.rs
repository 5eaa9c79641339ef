use schemas::events::Topic;
use std::fmt;
use std::str::FromStr;

/// Header that carries a consistency token (also accepted as `?consistencyToken=`).
pub const TOKEN_HEADER: &str = "x-consistency-token";

/// Where a command's events landed in the log.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Position {
    pub topic: Topic,
    pub partition: u32,
    pub offset: u64,
}

/// The log positions a command wrote. A query holding the token waits until the read
/// models it reads have applied those positions (read-your-writes). Text form:
/// `deliveries:3:1207,drones:0:88` — topic, partition, offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsistencyToken {
    pub positions: Vec<Position>,
}

impl ConsistencyToken {
    /// Keeps the highest offset per partition.
    pub fn from_positions(positions: impl IntoIterator<Item = Position>) -> ConsistencyToken {
        let mut all: Vec<Position> = positions.into_iter().collect();
        all.sort();
        let mut kept: Vec<Position> = Vec::with_capacity(all.len());
        for p in all {
            match kept.last_mut() {
                Some(last) if last.topic == p.topic && last.partition == p.partition => {
                    last.offset = p.offset
                }
                _ => kept.push(p),
            }
        }
        ConsistencyToken { positions: kept }
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.positions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}:{}", p.topic.name(), p.partition, p.offset)?;
        }
        Ok(())
    }
}

impl FromStr for ConsistencyToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("malformed consistency token {s:?}");
        // Digits only, at most `max` of them (so a partition fits a u32, an offset a u64).
        let digits = |text: &str, max: usize| {
            let ok =
                !text.is_empty() && text.len() <= max && text.bytes().all(|b| b.is_ascii_digit());
            if ok { Ok(()) } else { Err(bad()) }
        };
        let mut positions = Vec::new();
        for part in s.split(',').filter(|_| !s.is_empty()) {
            let mut fields = part.split(':');
            let (Some(topic), Some(partition), Some(offset), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            positions.push(Position {
                topic: Topic::from_name(topic).ok_or_else(bad)?,
                partition: digits(partition, 9)
                    .and_then(|()| partition.parse().map_err(|_| bad()))?,
                offset: digits(offset, 19).and_then(|()| offset.parse().map_err(|_| bad()))?,
            });
        }
        Ok(ConsistencyToken::from_positions(positions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_keeps_the_highest_offset_per_partition() {
        let token: ConsistencyToken = "deliveries:3:5,drones:0:9,deliveries:3:7"
            .parse()
            .expect("parses");
        assert_eq!(token.to_string(), "drones:0:9,deliveries:3:7");
        assert_eq!(token.to_string().parse::<ConsistencyToken>(), Ok(token));
    }

    #[test]
    fn the_empty_token_is_no_position() {
        assert_eq!(
            "".parse::<ConsistencyToken>(),
            Ok(ConsistencyToken::default())
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "deliveries:3",
            "nope:1:2",
            "deliveries:x:1",
            "deliveries:1:2:3",
            "deliveries:+1:2",
            "deliveries:1:2,,drones:0:1",
            "deliveries:1234567890:2",
            "deliveries:1:12345678901234567890",
        ] {
            assert!(bad.parse::<ConsistencyToken>().is_err(), "{bad}");
        }
    }
}

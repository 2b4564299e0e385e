//! Key names of one fleet, their limits, and the compare-and-set script (the schema itself
//! is documented in the parent module).

use std::time::Duration;

/// Replaced versions kept per policy.
pub const HISTORY_CAP: usize = 100;
/// Probe results kept in the shared stream (approximately: `XADD MAXLEN ~`).
pub const PROBE_STREAM_LEN: usize = 100_000;
/// The probe stream expires this long after its last write.
pub const PROBE_TTL: Duration = Duration::from_secs(900);
/// Resolver-map join inputs kept in the shared stream (approximately).
pub const JOIN_STREAM_LEN: usize = 200_000;
/// The join stream expires this long after its last write. A nonce waits for its other
/// half for minutes, not longer, so older inputs could not join anyway.
pub const JOIN_TTL: Duration = Duration::from_secs(900);

/// The compare-and-set: KEYS = policies, etags, history; ARGV = key, expectation (`absent`,
/// `present`, `etag`), wanted ETag, new text, new ETag, now (ms), op (`put`, `delete`),
/// notice channel, history cap. Returns `{1, new etag}` or `{0, current etag or ""}`.
pub const PUT_IF: &str = r#"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then cur = nil end
local ok
if ARGV[2] == 'absent' then ok = (cur == nil)
elseif ARGV[2] == 'present' then ok = (cur ~= nil)
else ok = (cur == ARGV[3]) end
if not ok then return {0, cur or ''} end
if ARGV[7] == 'delete' and cur == nil then return {0, ''} end
if cur ~= nil then
  local old = redis.call('HGET', KEYS[1], ARGV[1]) or ''
  local id = tonumber(ARGV[6])
  local head = redis.call('LINDEX', KEYS[3], 0)
  if head then
    local hid = tonumber(string.match(head, '^(%d+)'))
    if hid and hid >= id then id = hid + 1 end
  end
  redis.call('LPUSH', KEYS[3], string.format('%d', id) .. '\n' .. old)
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[9]) - 1)
end
if ARGV[7] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('PUBLISH', ARGV[8], 'policy ' .. ARGV[1])
return {1, ARGV[5]}
"#;

/// RUM keys expire this long after their first write (`EXPIRE … NX`): a window is at most
/// 60 minutes, usually 5; 15 minutes covers the default window with room for clock skew.
pub const RUM_TTL_S: u64 = 900;

/// Key names of one fleet.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn key(&self, rest: &str) -> String {
        format!("{{{}}}:{rest}", self.prefix)
    }
    pub fn policies(&self) -> String {
        self.key("policies")
    }
    pub fn etags(&self) -> String {
        self.key("etags")
    }
    pub fn history(&self, key: &str) -> String {
        self.key(&format!("history:{key}"))
    }
    pub fn overrides(&self) -> String {
        self.key("overrides")
    }
    pub fn halted(&self) -> String {
        self.key("halted")
    }
    pub fn probes(&self) -> String {
        self.key("probes")
    }
    pub fn joins(&self) -> String {
        self.key("resolver-joins")
    }
    pub fn changes(&self) -> String {
        self.key("changes")
    }
    /// Set while the fleet has had policies: a Redis that lost its data (restarted without
    /// persistence, flushed, replaced) has no marker, which tells it apart from a fleet whose
    /// policies were all deleted on purpose.
    pub fn seeded(&self) -> String {
        self.key("seeded")
    }
}

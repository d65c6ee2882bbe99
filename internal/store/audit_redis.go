package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

// The audit log in Redis, beside the keys listed on Redis:
//
//	audit:seq            counter: the sequence part of entry IDs
//	audit:entries        hash: entry ID -> the entry's JSON (without its ID)
//	audit:all            zset, every score 0: entry IDs, read by lex range
//	audit:repo:<repo>    zset, every score 0: the repository's entry IDs

// AppendAudit adds e to the audit log and returns it as kept, with its ID
// and At (now, when zero). The log is append-only: entries are never
// changed, and each append first removes up to a hundred entries older
// than record.AuditRetention.
func (r *Redis) AppendAudit(ctx context.Context, e record.AuditEntry) (record.AuditEntry, error) {
	now := time.Now()
	if err := prepareAudit(&e, now); err != nil {
		return record.AuditEntry{}, err
	}
	blob, err := json.Marshal(e)
	if err != nil {
		return record.AuditEntry{}, err
	}
	keys := []string{r.key("audit", "seq"), r.key("audit", "entries"), r.key("audit", "all")}
	if e.Repo != "" {
		keys = append(keys, r.key("audit", "repo", e.Repo))
	}
	id, err := r.scripts.appendAudit.Run(ctx, r.client, keys,
		auditIDPrefix(e.At), blob, auditCutoff(now), auditTrimBatch, r.key("audit", "repo", "")).Text()
	if err != nil {
		return record.AuditEntry{}, r.fail("append audit", err)
	}
	e.ID = id
	return e, nil
}

// ListAudit returns a page of the entries f picks, newest first.
func (r *Redis) ListAudit(ctx context.Context, f record.AuditFilter) (record.AuditPage, error) {
	return listAudit(ctx, f, r.auditRange)
}

// EachAudit calls fn with every entry f picks (at most f.Limit when set),
// newest first, a thousand at a time, so an export of the whole log holds
// one batch in memory. An error from fn stops it and is returned as is.
func (r *Redis) EachAudit(ctx context.Context, f record.AuditFilter, fn func(record.AuditEntry) error) error {
	return eachAudit(ctx, f, r.auditRange, fn)
}

func (r *Redis) auditRange(ctx context.Context, repo, lo, hi string, n int) ([]record.AuditEntry, error) {
	index := r.key("audit", "all")
	if repo != "" {
		index = r.key("audit", "repo", repo)
	}
	from, to := "-", "+"
	if lo != "" {
		from = "[" + lo
	}
	if hi != "" {
		to = "(" + hi
	}
	res, err := r.scripts.auditRange.Run(ctx, r.client, []string{index, r.key("audit", "entries")}, from, to, n).StringSlice()
	if err != nil {
		return nil, r.fail("audit", err)
	}
	out := make([]record.AuditEntry, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		var e record.AuditEntry
		if err := json.Unmarshal([]byte(res[i+1]), &e); err != nil {
			return nil, fmt.Errorf("store: audit entry %s: %w", res[i], err)
		}
		e.ID = res[i]
		out = append(out, e)
	}
	return out, nil
}

// Aged entries go first, so an entry appended with an old At stays until
// the next append. The repository indexes of trimmed entries are named
// from their JSON and ARGV[5]; fine on one Redis, not on a cluster.
//
// KEYS: seq, entries, all[, repo index]. ARGV: the ID's time, entry JSON,
// the cutoff (an ID prefix), how many to trim at most, repo index prefix.
// Returns the new entry's ID.
const appendAuditLua = `
local old = redis.call('ZRANGEBYLEX', KEYS[3], '-', '(' .. ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(old) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then
    local ok, e = pcall(cjson.decode, v)
    if ok and type(e) == 'table' and type(e.repo) == 'string' and e.repo ~= '' then
      redis.call('ZREM', ARGV[5] .. e.repo, id)
    end
  end
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
local id = string.format('%s-%012d', ARGV[1], redis.call('INCR', KEYS[1]))
redis.call('HSET', KEYS[2], id, ARGV[2])
redis.call('ZADD', KEYS[3], 0, id)
if KEYS[4] then redis.call('ZADD', KEYS[4], 0, id) end
return id
`

// KEYS: index, entries. ARGV: lex min, lex max, count. Newest first, as
// {id, json, id, json, ...}; an index member whose entry is gone is skipped.
const auditRangeLua = `
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[2], ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then
    out[#out + 1] = id
    out[#out + 1] = v
  end
end
return out
`

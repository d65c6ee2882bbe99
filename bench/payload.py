"""Writes a signed-size webhook payload for the bench scripts: GitHub's
example of the event, grown to SIZE bytes with content shaped like real
deliveries (distinct commit SHAs, messages, file paths; a PR body of prose),
so that it compresses like a real one (about 3x with S2 for a push), not like a run
of one repeated byte. Compact JSON, as GitHub sends it.

usage: python3 bench/payload.py push|pull_request OUT [SIZE]
A push deletes a branch: its job needs no GitHub call, so a bot's workers
drain it as in production instead of retrying against an unreachable
GitHub."""
import hashlib
import json
import random
import sys

event, out = sys.argv[1], sys.argv[2]
size = int(sys.argv[3]) if len(sys.argv) > 3 else 24 * 1024
rng = random.Random(17)
words = ("fix add update remove refactor handler config deploy test docs bump "
         "dependency retry timeout cache queue worker batch canary health check "
         "release rollback preview comment status metrics log error path route "
         "server client token secret the a of for when with and not on in").split()
dirs = ["cmd/bot", "internal/deploy", "internal/handlers", "queue", "webhooks",
        "docs", "web/src/components", "pkg/api"]


# Prose: 10,000 made-up words drawn by Zipf's law, which compresses about as
# English does (gzip about 3x), unlike a few words repeated.
vocab = words + ["".join(rng.choice("etaoinshrdlcumwfgypbvkjxqz"[:rng.randint(8, 26)])
                         for _ in range(rng.randint(2, 10))) for _ in range(10000)]
weights = [1 / (r + 10) for r in range(len(vocab))]


def sentence(lo, hi):
    return " ".join(rng.choices(vocab, weights, k=rng.randint(lo, hi))).capitalize()


# Compact, as GitHub sends its payloads: no space after ',' and ':'.
def dumps(p):
    return json.dumps(p, separators=(",", ":"))


def length(p):
    return len(dumps(p))


if event == "push":
    p = json.load(open("fixtures/webhooks/push.json"))
    p.update(deleted=True, created=False, after="0" * 40, head_commit=None)
    template, p["commits"] = p["commits"][0], []
    i = 0
    while length(p) < size:
        c = json.loads(json.dumps(template))
        sha = hashlib.sha1(b"c%d" % i).hexdigest()
        i += 1
        c.update(id=sha, tree_id=hashlib.sha1(sha.encode()).hexdigest(),
                 url="https://github.com/octo-org/hello-world/commit/" + sha,
                 message="%s (#%d)" % (sentence(3, 12), rng.randint(1, 4000)),
                 timestamp="2024-06-03T%02d:%02d:%02dZ" % (rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)),
                 added=["%s/%s.go" % (rng.choice(dirs), rng.choice(words)) for _ in range(rng.randint(0, 3))],
                 modified=["%s/%s%s" % (rng.choice(dirs), rng.choice(words), rng.choice([".go", "_test.go", ".md", ".ts"]))
                           for _ in range(rng.randint(1, 5))])
        p["commits"].append(c)
    p["commits"].pop()
    pad, field = p["repository"], "description"
elif event == "pull_request":
    p = json.load(open("fixtures/webhooks/pull_request.opened.json"))
    pad, field = p["pull_request"], "body"
    pad[field] = ""
else:
    sys.exit("payload.py: event must be push or pull_request")
# Top up to exactly SIZE bytes with prose.
text = ""
while length(p) < size:
    text += sentence(5, 15) + ". "
    pad[field] = text
pad[field] = text[: len(text) - (length(p) - size)]
open(out, "w").write(dumps(p))

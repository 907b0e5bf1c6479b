"""What one cross-shard transfer costs Postgres: statements and commits per transfer, by
database, and the busiest statements, from pg_stat_statements and pg_stat_database.

A client of its own (Python's standard library, through the JSON API gateway): CLIENTS
threads each move one Iou back and forth between a party on shard-1 and one on shard-2,
TRANSFERS times, waiting until the receiver sees it before moving it on.

It needs a network whose Postgres loads pg_stat_statements, e.g.:

    initdb -D /tmp/pgm -U ordo --auth=trust
    pg_ctl -D /tmp/pgm -o "-p 55432 -c shared_preload_libraries=pg_stat_statements \
        -c max_connections=300" start
    createdb -h 127.0.0.1 -p 55432 -U ordo ordo_sequencer
    ordo up --data-dir /tmp/net --database-url postgres://ordo@127.0.0.1:55432/ordo_sequencer

usage: statements_per_transfer.py NETWORK_JSON ORDO_BINARY PG_PORT CLIENTS TRANSFERS
(docs/performance.md lists the figures it gave.)"""
import json, subprocess, sys, threading, time, urllib.request, uuid

net_path, ordo, pgport, clients, per = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
net = json.load(open(net_path))
base = net["gateways"][0]["http"]
run = uuid.uuid4().hex[:6]

def token(*args):
    return subprocess.check_output([ordo, "token", "--network", net_path, *args]).decode().strip()

def post(path, tok, body, raw=False):
    data = body if raw else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

admin = token("--admin")
IOU = "iou:Iou"
print(post("/v1/packages", admin, open(__import__("os").path.join(__import__("os").path.dirname(__file__), "../../examples/packages/iou.toml"), "rb").read(), raw=True)[0])
bank = f"bank{run}"
parties = [(bank, "shard-1")]
for i in range(clients):
    parties += [(f"a{run}_{i}", "shard-1"), (f"b{run}_{i}", "shard-2")]
for p, s in parties:
    st, b = post("/v1/parties/allocate", admin, {"identifierHint": p, "shard": s})
    assert st == 200, (p, st, b)
toks = {p: token("--act-as", p) for p, _ in parties}
ious = []
for i in range(clients):
    a = f"a{run}_{i}"
    st, b = post("/v1/create", toks[bank], {"templateId": IOU, "payload": {"issuer": bank, "owner": a, "currency": "USD", "amount": "10"}})
    assert st == 200, b
    ious.append(b["result"]["contractId"])

def psql(db, sql):
    return subprocess.check_output(["psql", "-h", "127.0.0.1", "-p", pgport, "-U", "ordo", "-d", db, "-Atc", sql]).decode()

def xacts():
    out = {}
    for line in psql("postgres", "select datname, xact_commit from pg_stat_database where datname like 'ordo%'").split():
        d, c = line.split("|"); out[d] = int(c)
    return out

for db in ["ordo_sequencer", "ordo_topology", "ordo_mediator", "ordo_shard_1", "ordo_shard_2", "postgres"]:
    try:
        psql(db, "create extension if not exists pg_stat_statements")
    except subprocess.CalledProcessError:
        pass
psql("postgres", "select pg_stat_statements_reset()")
x0 = xacts()
lat = []; done = [0]; fails = [0]
lock = threading.Lock()
def client(i):
    a, b = f"a{run}_{i}", f"b{run}_{i}"
    cid, owner = ious[i], a
    for _ in range(per):
        to = b if owner == a else a
        # wait until the owner sees it
        for _ in range(3000):
            st, r = post("/v1/fetch", toks[owner], {"contractId": cid})
            if st == 200 and r.get("result"): break
            time.sleep(0.002)
        t = time.time()
        st, r = post("/v1/exercise", toks[owner], {"templateId": IOU, "contractId": cid, "choice": "Transfer", "argument": {"newOwner": to}})
        if st != 200:
            with lock: fails[0] += 1
            print("fail", st, r, file=sys.stderr); return
        with lock:
            lat.append(time.time() - t); done[0] += 1
        cid, owner = r["result"]["exerciseResult"], to
t0 = time.time()
ts = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
[t.start() for t in ts]; [t.join() for t in ts]
el = time.time() - t0
x1 = xacts()
n = done[0]
lat.sort()
print(json.dumps({"transfers": n, "failed": fails[0], "seconds": round(el, 2), "per_sec": round(n / el, 1),
                  "p50_ms": round(lat[len(lat)//2]*1000, 1), "p99_ms": round(lat[int(len(lat)*0.99)]*1000, 1)}))
print("commits per transfer by database:")
for d in sorted(x1):
    print(f"  {d}: {(x1[d]-x0.get(d,0))/n:.2f}")
print("statements per transfer by database (pg_stat_statements calls):")
rows = psql("postgres", "select d.datname, sum(s.calls) from pg_stat_statements s join pg_database d on d.oid=s.dbid group by 1 order by 1")
for line in rows.split():
    d, c = line.split("|"); print(f"  {d}: {int(c)/n:.1f}")
print("top statements (calls per transfer, mean ms, db):")
rows = psql("postgres", "select d.datname, s.calls, round(s.mean_exec_time::numeric,3), regexp_replace(left(s.query,110), '\\s+', ' ', 'g') from pg_stat_statements s join pg_database d on d.oid=s.dbid order by s.calls desc limit 45")
for line in rows.splitlines():
    d, c, m, q = line.split("|", 3); print(f"  {int(c)/n:6.2f} {m:>7} {d:16} {q}")

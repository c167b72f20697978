#!/usr/bin/env bash
# Zero-shot task table (issue 9): `shiftadd eval tasks` on several models, the same items each,
# rendered as one markdown + JSON table.
#
#   TAG=smollm2-light LIMIT=100 bench/tasks.sh "label=path/to/model.gguf" ...
#
# Each model's result is kept in bench/tmp/tasks/$TAG/<label>.json (and its --dump-scores lines);
# a model whose JSON is there already is not run again (delete it to redo), so a long table can
# be built over several sittings. The table is re-rendered after every model.
# NOTES=FILE appends a hand-written paragraph below the table on every render; MODEL_NAME names
# the model family in the title (default SmolLM2-135M-Instruct).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
LIMIT=${LIMIT:-100}
THREADS=${THREADS:-2}
TASKS=${TASKS:-arc_easy,arc_challenge,piqa,copa,rte}
tag=${TAG:-$DATE}
dir=bench/tmp/tasks/$tag
out=bench/results/tasks-$tag
mkdir -p "$dir"
export SA
[ $# -gt 0 ] || { echo "usage: bench/tasks.sh LABEL=MODEL..." >&2; exit 2; }
header "Zero-shot tasks: ${MODEL_NAME:-SmolLM2-135M-Instruct}, first $LIMIT items per task" \
	"LIMIT=$LIMIT TAG=$tag bench/tasks.sh $(printf "'%s' " "$@")" > "$dir/header.md.new"
# The header (command, commit, date) is replaced only when this invocation scores a model, so a
# render-only rerun keeps the provenance of the runs.
[ -f "$dir/header.md" ] || cp "$dir/header.md.new" "$dir/header.md"

render() {
	python3 - "$dir" "$out" "$LIMIT" "$TASKS" "$@" <<'PY'
import json, math, os, re, subprocess, sys
d, out, limit, tasks, *models = sys.argv[1:]
tasks = tasks.split(",")
rows = []
for lm in models:
    label, path = lm.split("=", 1)
    j = os.path.join(d, re.sub(r"[^A-Za-z0-9.-]", "_", label) + ".json")
    if not os.path.exists(j):
        continue
    r = json.load(open(j))
    # Conversion provenance of the file (method, bits, calibration) from `shiftadd info`.
    info = subprocess.run([os.environ["SA"], "info", "--json", path], capture_output=True, text=True)
    meta = json.loads(info.stdout).get("metadata", {}) if info.returncode == 0 else {}
    conv = {k[9:]: v for k, v in meta.items()
            if k.startswith("shiftadd.") and not isinstance(v, (list, dict))}
    rows.append(dict(label=label, model=path, conversion=conv or None, result=r))
hdr = open(os.path.join(d, "header.md")).read()
field = lambda k: (re.search(rf"^- {k}: (.*)$", hdr, re.M) or [None, None])[1]
json.dump(dict(command=field("command"), commit=field("commit"), machine=field("machine"),
               date=field("date"), limit=int(limit), tasks=tasks, rows=rows),
          open(out + ".json", "w"), indent=1)
pct = lambda x: f"{100 * x:.1f}"
with open(out + ".md", "w") as f:
    f.write(open(os.path.join(d, "header.md")).read())
    f.write("Cells: acc ± standard error / acc_norm ± standard error, in %. Mean = unweighted mean "
            "over the tasks, its standard error sqrt(sum se²)/n.\n\n")
    f.write("| model | " + " | ".join(tasks) + " | mean |\n")
    f.write("|---|" + "---|" * (len(tasks) + 1) + "\n")
    for row in rows:
        by = {t["task"]: t for t in row["result"]["tasks"]}
        cells = []
        for t in tasks:
            x = by.get(t)
            cells.append(f"{pct(x['acc'])} ± {pct(x['acc_stderr'])} / {pct(x['acc_norm'])} ± "
                         f"{pct(x['acc_norm_stderr'])}" if x else "–")
        m = row["result"]["mean"]
        cells.append(f"**{pct(m['acc'])}** ± {pct(m['acc_stderr'])} / {pct(m['acc_norm'])} ± "
                     f"{pct(m['acc_norm_stderr'])}")
        f.write(f"| {row['label']} | " + " | ".join(cells) + " |\n")
    f.write("\nItems per task: " + ", ".join(
        f"{t['task']} {t['items']}" for t in rows[0]["result"]["tasks"]) + ".\n" if rows else "")
    f.write("\nModels:\n\n")
    for row in rows:
        c = row["conversion"]
        how = (f"{c.get('method')} {c.get('bits')}-bit, calibration {c.get('calib.nsamples')} x "
               f"{c.get('calib.seqlen')} seed {c.get('calib.seed')}, {c.get('rounds')} BCQ rounds, "
               f"{c.get('avg_bits', 0):.3f} bits/weight" if c else "not converted")
        f.write(f"- {row['label']}: `{row['model']}` ({how})\n")
    notes = os.environ.get("NOTES")
    if notes and os.path.exists(notes):
        f.write("\n" + open(notes).read())
print(open(out + ".md").read())
PY
}

for lm in "$@"; do
	label=${lm%%=*} path=${lm#*=}
	i=$(printf %s "$label" | sed 's/[^A-Za-z0-9.-]/_/g')
	if [ -s "$dir/$i.json" ] && [ "$(json_get "$dir/$i.json" model)" = "$path" ]; then
		echo "== $label: kept" >&2
	else
		echo "== $label ($path)" >&2
		cp "$dir/header.md.new" "$dir/header.md"
		"$SA" eval tasks -m "$path" --tasks "$TASKS" --limit "$LIMIT" -j "$THREADS" --json \
			--dump-scores "$dir/$i.scores.jsonl" > "$dir/$i.json.tmp" 2> "$dir/$i.log"
		mv "$dir/$i.json.tmp" "$dir/$i.json"
	fi
	render "$@" > /dev/null
done
render "$@"

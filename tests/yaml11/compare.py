"""Reads pairs of (input, rendered output) streams with PyYAML's SafeLoader, a YAML 1.1
reader like Go's yaml.v2 in kubectl, Helm and Argo CD, removes what render injects from each
output object, and checks that what is left equals the input object.

Usage: compare.py DIR   (DIR holds N.in.yaml / N.out.yaml pairs)
Prints one line per failing pair and exits 1 if any fails.
"""
import glob
import os
import sys

import yaml

BIN_PREFIX = ["/secretstore/bin/secretstore", "exec", "--"]
STATUS = "vault.secretstore.rafay.dev/status"
TEMPLATE_PATHS = {
    "Pod": [],
    "PodTemplate": ["template"],
    "CronJob": ["spec", "jobTemplate", "spec", "template"],
}


def template_of(obj):
    path = TEMPLATE_PATHS.get(obj.get("kind"), ["spec", "template"])
    node = obj
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, dict) else None


def strip(out_obj, in_obj):
    out_t, in_t = template_of(out_obj), template_of(in_obj)
    if out_t is None or in_t is None:
        return
    ann = (out_t.get("metadata") or {}).get("annotations")
    if isinstance(ann, dict) and STATUS in ann and STATUS not in ((in_t.get("metadata") or {}).get("annotations") or {}):
        del ann[STATUS]
    spec, in_spec = out_t.get("spec") or {}, in_t.get("spec") or {}

    def drop_named(container, key, in_container):
        items = container.get(key)
        if isinstance(items, list):
            kept = [i for i in items if not (isinstance(i, dict) and str(i.get("name", "")).startswith("secretstore-"))]
            if not kept and key not in in_container:
                del container[key]
            else:
                container[key] = kept

    drop_named(spec, "initContainers", in_spec)
    drop_named(spec, "volumes", in_spec)
    for list_key in ("containers", "initContainers"):
        in_list = in_spec.get(list_key) or []
        for i, c in enumerate(spec.get(list_key) or []):
            in_c = in_list[i] if i < len(in_list) else {}
            drop_named(c, "volumeMounts", in_c)
            cmd = c.get("command")
            if isinstance(cmd, list) and cmd[:3] == BIN_PREFIX:
                if "command" in in_c:
                    c["command"] = cmd[3:]
                else:
                    del c["command"]


def objects(stream):
    for doc in yaml.load_all(stream, Loader=yaml.SafeLoader):
        if doc is None:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("items"), list) and str(doc.get("kind", "")).endswith("List"):
            yield from doc["items"]
        else:
            yield doc


def main(directory):
    failures = 0
    pairs = sorted(glob.glob(os.path.join(directory, "*.in.yaml")))
    for path in pairs:
        out_path = path[: -len(".in.yaml")] + ".out.yaml"
        with open(path, encoding="utf-8") as f:
            ins = list(objects(f.read()))
        with open(out_path, encoding="utf-8") as f:
            outs = list(objects(f.read()))
        if len(ins) != len(outs):
            print(f"{out_path}: {len(outs)} objects, input has {len(ins)}")
            failures += 1
            continue
        for n, (i, o) in enumerate(zip(ins, outs)):
            if isinstance(o, dict) and isinstance(i, dict):
                strip(o, i)
            if i != o:
                print(f"{out_path}: object {n} differs from its input once the injected parts are removed")
                failures += 1
    print(f"compared {len(pairs)} pairs, {failures} failing")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1])

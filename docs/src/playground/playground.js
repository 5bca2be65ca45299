// The playground page (docs/src/playground.md): loads secretstore compiled to WebAssembly
// (secretstore_wasm.js and its .wasm, which scripts/build-book.sh puts next to this file),
// exposes `window.secretstore`, and wires the page. Everything runs in the page: no request
// leaves the book's own origin.

const $ = (id) => document.getElementById(id);
const status = $("ss-status");
const input = $("ss-input");

// The findings' links: each code's row of the codes page, relative to this page.
const CODES_PAGE = "reference/codes.html";

let wasm;
try {
    wasm = await import("./secretstore_wasm.js");
    await wasm.default({ module_or_path: new URL("secretstore_wasm_bg.wasm", import.meta.url) });
} catch (error) {
    status.textContent =
        "This build of the book has no playground WebAssembly: build the book with " +
        "scripts/build-book.sh OUT_DIR. (" + error + ")";
    status.classList.add("ss-error");
    throw error;
}

function render(text) {
    const answer = JSON.parse(wasm.renderJson(String(text)));
    if (answer.error !== undefined) {
        const error = new Error(answer.error);
        error.findings = answer.findings;
        throw error;
    }
    return answer.output;
}

function lint(text) {
    return JSON.parse(wasm.lintJson(String(text)));
}

// `secretstore add` on a text: the edited text, the changes and warnings, or an error
// with its findings (the same I/O-free core as the command).
function add(text, request) {
    if (typeof wasm.addJson !== "function") {
        throw new Error("this build of the playground has no `add`");
    }
    const answer = JSON.parse(wasm.addJson(String(text), JSON.stringify(request)));
    if (answer.error !== undefined) {
        const error = new Error(answer.error);
        error.findings = answer.findings;
        throw error;
    }
    return answer;
}

window.secretstore = {
    version: wasm.version(),
    render,
    lint,
    add,
    diff: (before, after) => wasm.diff(String(before), String(after), "input", "rendered"),
    ready: Promise.resolve(),
};

// --- the page ---------------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
        node.setAttribute(name, value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
}

function findingItem(finding) {
    const code = element(
        "a",
        { href: `${CODES_PAGE}#${finding.code.toLowerCase()}`, class: "ss-code" },
        finding.code,
    );
    // A finding about add's request itself (line 0) names the field, not a position.
    const where = finding.line === 0 ? finding.file : `line ${finding.line}:${finding.column}`;
    const object = finding.object
        ? ` ${finding.object.kind}${finding.object.namespace ? " " + finding.object.namespace + "/" : " "}${finding.object.name}`
        : "";
    const field = finding.field ? ` ${finding.field}` : "";
    return element(
        "li",
        { class: `ss-${finding.severity}` },
        element("span", { class: "ss-severity" }, finding.severity),
        " ",
        code,
        ` ${where}${object}${field}: ${finding.message}`,
        finding.help ? element("div", { class: "ss-help" }, `help: ${finding.help}`) : null,
    );
}

function showFindings(container, findings) {
    container.replaceChildren();
    if (findings.length === 0) {
        container.append(element("p", { class: "ss-clean" }, "No findings: lint is clean."));
        return;
    }
    container.append(element("ul", {}, ...findings.map(findingItem)));
}

function showDiff(pre, diff) {
    pre.replaceChildren();
    if (diff === "") {
        pre.append("(no change: render copies the input as it is)");
        return;
    }
    for (const line of diff.split("\n")) {
        const kind = line.startsWith("@@")
            ? "ss-hunk"
            : line.startsWith("+")
              ? "ss-added"
              : line.startsWith("-")
                ? "ss-removed"
                : null;
        pre.append(kind ? element("span", { class: kind }, line) : line, "\n");
    }
}

function update() {
    const text = input.value;
    showFindings($("ss-findings"), lint(text).findings);
    try {
        const output = render(text);
        $("ss-output").textContent = output;
        showDiff($("ss-diff"), window.secretstore.diff(text, output));
    } catch (error) {
        $("ss-output").textContent = error.message;
        $("ss-diff").textContent = "(render refused the input: see the findings above)";
    }
}

let pending;
input.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(update, 150);
});

// mdBook's include drops the file's last line break; the example is the file as it is.
const example = $("ss-example").textContent.replace(/^\n/, "").replace(/\n?$/, "\n");
$("ss-reset").addEventListener("click", () => {
    input.value = example;
    $("ss-add-result").replaceChildren();
    update();
});

// The add form: the same request as `secretstore add FILE [--workload ...] --env NAME=REF`.
const form = $("ss-add-form");
const targetLabel = $("ss-add-target-label");

function addRequest() {
    const data = new FormData(form);
    const field = (name) => (data.get(name) || "").trim() || null;
    const request = {
        workload: field("workload"),
        container: field("container"),
        role: field("role"),
        env: [],
        files: [],
    };
    const target = field("target") || "";
    const reference = field("reference") || "";
    if (data.get("kind") === "file") {
        request.files.push({ path: target, reference });
    } else {
        request.env.push({ name: target, reference });
    }
    return request;
}

function addCommand(request) {
    const quote = (s) => (/^[\w@%+=:,./#-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);
    const words = ["secretstore", "add", "FILE"];
    if (request.workload) words.push("--workload", quote(request.workload));
    if (request.container) words.push("--container", quote(request.container));
    if (request.role) words.push("--role", quote(request.role));
    for (const e of request.env) words.push("--env", quote(`${e.name}=${e.reference}`));
    for (const f of request.files) words.push("--file", quote(`${f.path}=${f.reference}`));
    return words.join(" ");
}

function updateForm() {
    const file = new FormData(form).get("kind") === "file";
    targetLabel.textContent = file ? "File path (mount path/file name)" : "Env var name";
    form.elements.target.placeholder = file ? "/etc/shop/api/token" : "API_TOKEN";
    $("ss-add-command").textContent = addCommand(addRequest());
}
form.addEventListener("input", updateForm);
form.addEventListener("change", updateForm);

form.addEventListener("submit", (event) => {
    event.preventDefault();
    const result = $("ss-add-result");
    result.replaceChildren();
    const before = input.value;
    try {
        const added = add(before, addRequest());
        input.value = added.text;
        const summary = added.changed
            ? `Added to ${added.workload.kind}/${added.workload.name}, container ${added.container}:`
            : "Nothing to change: the workload has that reference already.";
        result.append(
            element("p", {}, summary),
            element("ul", {}, ...added.changes.map((c) => element("li", {}, element("code", {}, c)))),
        );
        if (added.warnings.length > 0) {
            const warnings = element("div", { class: "ss-findings" });
            showFindings(warnings, added.warnings);
            result.append(warnings);
        }
        if (added.changed) {
            const pre = element("pre", { class: "ss-diff" });
            showDiff(pre, wasm.diff(before, added.text, "before", "after"));
            result.append(element("p", {}, "What add changed:"), pre);
        }
        update();
    } catch (error) {
        result.append(element("p", { class: "ss-error" }, "add refused: the manifest is unchanged."));
        if (error.findings && error.findings.length > 0) {
            const findings = element("div", { class: "ss-findings" });
            showFindings(findings, error.findings);
            result.append(findings);
        } else {
            result.append(element("pre", {}, error.message));
        }
    }
});

if (typeof wasm.addJson !== "function") {
    for (const control of form.elements) control.disabled = true;
    $("ss-add-result").append(
        element("p", { class: "ss-error" }, "This build of the playground has no `add`."),
    );
}

input.value = example;
updateForm();
update();
status.textContent = `secretstore ${wasm.version()}, running in your browser.`;

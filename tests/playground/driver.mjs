// Drives the book's playground page in headless Chromium for tests/playground.rs:
//
//   node driver.mjs PLAYWRIGHT_CORE_DIR CHROMIUM URL INPUTS_JSON OUT_JSON
//
// INPUTS_JSON is `[{"name", "text"}]`. Writes OUT_JSON: every request the page made, the
// page's errors, what its own widgets show for the example and after two `add`s, and per
// input what `window.secretstore.render` returned or threw and what
// `window.secretstore.lint` returned.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [playwrightDir, chromiumPath, url, inputsPath, outPath] = process.argv.slice(2);
const { chromium } = createRequire(join(playwrightDir, "package.json"))("playwright-core");
const inputs = JSON.parse(readFileSync(inputsPath, "utf8"));

// As root, Chromium runs only without its sandbox.
const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
try {
    const context = await browser.newContext();
    const requests = [];
    const failed = [];
    const pageErrors = [];
    context.on("request", (request) => requests.push(request.url()));
    context.on("requestfailed", (request) => failed.push(`${request.url()}: ${request.failure()?.errorText}`));
    context.on("response", (response) => {
        if (response.status() >= 400) failed.push(`${response.url()}: HTTP ${response.status()}`);
    });
    const page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    page.on("console", (message) => {
        if (message.type() === "error") pageErrors.push(`console: ${message.text()}`);
    });
    await page.goto(url, { waitUntil: "load" });
    await page.waitForFunction(
        () => window.secretstore !== undefined || document.querySelector("#ss-status.ss-error"),
        null,
        { timeout: 30000 },
    );
    if (!(await page.evaluate(() => window.secretstore !== undefined))) {
        throw new Error(`the playground did not load:\n${pageErrors.join("\n")}`);
    }
    await page.evaluate(() => window.secretstore.ready);

    // The page's own widgets on its example.
    const widgets = await page.evaluate(() => ({
        input: document.getElementById("ss-input").value,
        output: document.getElementById("ss-output").textContent,
        diff: document.getElementById("ss-diff").textContent,
        status: document.getElementById("ss-status").textContent,
    }));

    // The add form, twice on the example: an env var, then a file.
    const adds = [];
    for (const [kind, target] of [["env", "API_TOKEN"], ["file", "/etc/shop/api/token"]]) {
        await page.check(`#ss-add-form input[name=kind][value=${kind}]`);
        await page.fill("#ss-add-form input[name=target]", target);
        await page.fill("#ss-add-form input[name=reference]", "secret/shop/api#token");
        await page.click("#ss-add-form button[type=submit]");
        adds.push(await page.evaluate(() => ({
            text: document.getElementById("ss-input").value,
            result: document.getElementById("ss-add-result").textContent,
            command: document.getElementById("ss-add-command").textContent,
        })));
    }

    // The findings pane on an input render refuses: its codes link the codes page.
    const refused = inputs.find((input) => input.name.endsWith("env-ref-bad.yaml"));
    await page.evaluate(() => document.getElementById("ss-findings").replaceChildren());
    await page.fill("#ss-input", refused.text);
    await page.waitForFunction(() => document.querySelector("#ss-findings a.ss-code") !== null);
    widgets.refusedCodeLinks = await page.evaluate(() =>
        [...document.querySelectorAll("#ss-findings a.ss-code")].map((a) => [a.textContent, a.getAttribute("href")]),
    );

    const results = await page.evaluate((inputs) => {
        return inputs.map(({ name, text }) => {
            let render;
            try {
                render = { output: window.secretstore.render(text) };
            } catch (error) {
                render = { error: error.message, findings: error.findings ?? null };
            }
            let lint;
            try {
                lint = window.secretstore.lint(text);
            } catch (error) {
                lint = { thrown: String(error) };
            }
            return { name, render, lint };
        });
    }, inputs);

    writeFileSync(outPath, JSON.stringify({ requests, failed, pageErrors, widgets, adds, results }));
} finally {
    await browser.close();
}

// Drives the Snakemake report like a reader: opens every category, then every result in it,
// and records what the page shows in <pre id="errorless-check"> as JSON (the test:
// tests/test_report.py::test_report_renders_in_a_browser). With #show=<result path> the page
// ends showing that result, for a screenshot.
(function () {
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const decode = (uri) => {
    const comma = uri.indexOf(",");
    const head = uri.slice(0, comma), body = uri.slice(comma + 1);
    const bytes = head.endsWith(";base64") ? atob(body) : decodeURIComponent(body);
    return new TextDecoder().decode(Uint8Array.from(bytes, (c) => c.charCodeAt(0)));
  };
  async function run() {
    const out = { categories: {}, errors: [] };
    while (typeof app === "undefined") await wait(50);
    const show = new URLSearchParams(location.hash.slice(1)).get("show");
    for (const cat of Object.keys(categories)) {
      app.setView({ navbarMode: "menu" });  // back to the menu, as a reader does
      await wait(200);
      app.showCategory(cat);
      await wait(300);
      const catMenu = document.body.innerText;
      const subs = Object.keys(categories[cat]);
      const items = [];
      for (const sub of subs) {
        // a category of several subcategories lists them (folders); its results are listed
        // once the reader opens one
        let menu = catMenu;
        if (subs.length > 1) {  // from the category's list, as a reader does
          app.setView({ navbarMode: "menu" });
          await wait(200);
          app.showCategory(cat);
          await wait(200);
          app.setView({ navbarMode: "subcategory", category: cat, subcategory: sub });
          await wait(300);
          menu = document.body.innerText;
        }
        const subListed = subs.length === 1 || catMenu.includes(sub);
        for (const path of categories[cat][sub]) {
          const entry = results[path];
          const name = path.split("/").pop();
          const labels = Object.values(entry.labels || {});
          const item = { path, name, labels, mime: entry.mime_type, subcategory: sub,
                         listed: subListed && labels.length > 0 && labels.every((l) => menu.includes(l)) };
          if (/\.(png|svg|jpe?g)$/.test(path)) {
            app.setView({ content: "img", contentPath: entry.data_uri, resultPath: path });
            await wait(300);
            const img = [...document.querySelectorAll("img")].find((i) => i.src === entry.data_uri);
            item.shown = "img";
            item.width = img ? img.naturalWidth : 0;
            item.height = img ? img.naturalHeight : 0;
          } else if (/\.html$/.test(path)) {
            app.setView({ content: "html", contentPath: entry.data_uri, resultPath: path });
            await wait(300);
            const frame = [...document.querySelectorAll("iframe")].find((f) => f.src === entry.data_uri);
            const text = decode(entry.data_uri);
            item.shown = frame ? "iframe" : "none";
            item.tables = (text.match(/<table/g) || []).length;
            item.rows = (text.match(/<tr/g) || []).length;
          } else {
            const text = decode(entry.data_uri).trim();
            item.shown = "download";
            item.rows = text ? text.split("\n").length : 0;
          }
          items.push(item);
        }
      }
      out.categories[cat] = items;
    }
    if (show) {  // leave one result on screen for a screenshot
      for (const cat of Object.keys(categories)) {
        for (const sub of Object.keys(categories[cat])) {
          if (categories[cat][sub].includes(show)) {
            app.setView({ navbarMode: "menu" });
            await wait(200);
            app.showCategory(cat);
            await wait(200);
            const kind = /\.html$/.test(show) ? "html" : "img";
            app.setView({ content: kind, contentPath: results[show].data_uri, resultPath: show });
            await wait(500);
          }
        }
      }
    }
    const pre = document.createElement("pre");
    pre.id = "errorless-check";
    pre.style.display = "none";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  window.addEventListener("load", () => run().catch((e) => {
    const pre = document.createElement("pre");
    pre.id = "errorless-check";
    pre.textContent = JSON.stringify({ fatal: String(e) });
    document.body.appendChild(pre);
  }));
})();

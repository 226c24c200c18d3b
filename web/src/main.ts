// The single page of `ckpt serve`: a hash router over five views (catalog, checkpoint,
// compare, curves; live updates run underneath all of them).

import "uplot/dist/uPlot.min.css";
import "./app.css";
import { leaveCatalog, renderCatalog } from "./catalog";
import { renderCheckpoint } from "./checkpoint";
import { renderCompare } from "./compare";
import { leaveCurves, renderCurves } from "./curves";
import { indicator, startLive } from "./live";
import { clear, currentRoute, errorBox, h } from "./util";

function shell(): HTMLElement {
  const app = document.getElementById("app") ?? document.body;
  clear(app);
  const main = h("main", { id: "page" });
  app.append(
    h(
      "header",
      {},
      h("a", { href: "#/", class: "brand" }, "ckpt"),
      h("nav", {}, h("a", { href: "#/", id: "nav-catalog" }, "catalog")),
      indicator,
    ),
    main,
  );
  return main;
}

function route(main: HTMLElement): void {
  const { page, params } = currentRoute();
  leaveCatalog();
  leaveCurves();
  window.scrollTo(0, 0);
  main.setAttribute("data-page", page);
  const fail = (e: unknown) => {
    clear(main);
    main.append(errorBox("This page failed:", String(e)));
  };
  switch (page) {
    case "/":
    case "":
      renderCatalog(main, params);
      break;
    case "/checkpoint":
      renderCheckpoint(main, params).catch(fail);
      break;
    case "/compare":
      renderCompare(main, params).catch(fail);
      break;
    case "/curves":
      renderCurves(main, params).catch(fail);
      break;
    default:
      clear(main);
      main.append(errorBox("No such page:", page), h("p", {}, h("a", { href: "#/" }, "the catalog")));
  }
}

const main = shell();
window.addEventListener("hashchange", () => route(main));
route(main);
startLive();

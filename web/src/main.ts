// Entry point: starts the first flame graph query, then mounts the app on #app (the answer downloads while
// the page is built).
import "./style.css";
import { prefetch } from "./api";
import { App } from "./app";
import { flameParams, fromQuery } from "./state";
import { FLAME_PATH } from "./views/flame";

const initial = fromQuery(location.search);
if (initial.view === "flame") prefetch(FLAME_PATH, flameParams(initial));
new App(document.getElementById("app")!);

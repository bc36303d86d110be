// Entry point: mounts the app on #app.
import "./style.css";
import { App } from "./app";

new App(document.getElementById("app")!);

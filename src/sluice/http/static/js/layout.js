// The page's frame: the sidebar shown beside the conversation on a wide screen, or over
// it (with a scrim) on a narrow one, and the buttons around it.

const $ = (selector) => document.querySelector(selector);
const NARROW = "(max-width: 760px)";

export class Layout {
  constructor() {
    $("#sidebar-toggle").addEventListener("click", () => this.toggleSidebar());
    $("#scrim").addEventListener("click", () => this.toggleSidebar(false));
    $("#sidebar").addEventListener("click", (event) => {
      if (event.target.closest("a.conversation") && this.narrow()) this.toggleSidebar(false);
    });
    for (const dialog of document.querySelectorAll("dialog")) {
      // A click on the backdrop closes it.
      dialog.addEventListener("click", (event) => {
        if (event.target === dialog && dialog.id !== "key-dialog") dialog.close();
      });
    }
  }

  start() {
    $("#sidebar-toggle").setAttribute("aria-expanded", String(!this.narrow()));
    window.matchMedia(NARROW).addEventListener("change", () => {
      document.body.classList.remove("sidebar-open", "sidebar-hidden");
      $("#sidebar-toggle").setAttribute("aria-expanded", String(!this.narrow()));
    });
  }

  narrow() {
    return window.matchMedia(NARROW).matches;
  }

  sidebarOpen() {
    return document.body.classList.contains("sidebar-open") && this.narrow();
  }

  toggleSidebar(open) {
    const body = document.body;
    if (this.narrow()) {
      const show = open ?? !body.classList.contains("sidebar-open");
      body.classList.toggle("sidebar-open", show);
      $("#sidebar-toggle").setAttribute("aria-expanded", String(show));
      if (show) $("#search").focus();
      else $("#sidebar-toggle").focus();
    } else {
      const hide = open === undefined ? !body.classList.contains("sidebar-hidden") : !open;
      body.classList.toggle("sidebar-hidden", hide);
      $("#sidebar-toggle").setAttribute("aria-expanded", String(!hide));
    }
  }
}

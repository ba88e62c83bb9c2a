// Auto-scroll: the view follows a growing answer only while the reader is at the bottom.
// Scrolling up stops it and offers "jump to latest"; scrolling back down to the very
// bottom resumes it. Nothing here ever scrolls when not following.
//
// While following, any change of size keeps the bottom in view: an answer finished over
// several frames, code highlighted, a table laid out, the message box or a phone's
// toolbars resized — each lands after the scroll that opened the conversation, and used
// to leave a phone tens of pixels short of the bottom.

const AWAY = 48; // px from the bottom: farther than this is "reading something else"
const AT_BOTTOM = 2;

export class Follower {
  constructor(scroller, jump) {
    this.scroller = scroller;
    this.jump = jump;
    this.following = true;
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    scroller.addEventListener("wheel", (event) => {
      if (event.deltaY < 0) this.release();
    }, { passive: true });
    scroller.addEventListener("keydown", (event) => {
      if (["ArrowUp", "PageUp", "Home"].includes(event.key)) this.release();
    });
    jump.addEventListener("click", () => this.toBottom());
    if (globalThis.ResizeObserver) {
      const keep = () => {
        if (this.following && this.distance() > AT_BOTTOM) this.scroller.scrollTop = this.scroller.scrollHeight;
      };
      const observer = new ResizeObserver(keep);
      observer.observe(scroller);
      for (const child of scroller.children) observer.observe(child);
    }
  }

  distance() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight;
  }

  onScroll() {
    const distance = this.distance();
    if (distance <= AT_BOTTOM) this.following = true;
    else if (distance > AWAY) this.following = false;
    this.jump.hidden = this.following || distance <= AT_BOTTOM;
  }

  /** The reader moved up on purpose (wheel, keys): stop following at once. */
  release() {
    if (this.scroller.scrollHeight > this.scroller.clientHeight + AT_BOTTOM) {
      this.following = false;
    }
  }

  /** After new content: keep the bottom in view if following; otherwise never move. */
  stick() {
    if (this.following) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
    } else {
      this.jump.hidden = this.distance() <= AT_BOTTOM;
    }
  }

  toBottom() {
    this.following = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.jump.hidden = true;
  }
}

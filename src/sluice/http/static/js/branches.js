// Which answer each branch ended at, so that going back to an earlier version of a
// message shows its whole branch again. The API's leaf_id shows the path to a message;
// a version's descendants are not listed, so this browser remembers them (localStorage).

export class Branches {
  constructor(conversationId) {
    this.key = `sluice.leaves.${conversationId}`;
  }

  read() {
    try {
      return JSON.parse(localStorage.getItem(this.key) || "{}");
    } catch {
      return {};
    }
  }

  /** Leaving the branch `ids` (the shown path from a switched message on), ending at `leaf`. */
  leave(ids, leaf) {
    if (!leaf) return;
    const leaves = this.read();
    for (const id of ids) if (id) leaves[id] = leaf;
    try {
      localStorage.setItem(this.key, JSON.stringify(leaves));
    } catch {
      // Storage full or disabled: versions still switch, only less deep.
    }
  }

  /** The message to show as the tip when switching to version `id`. */
  leafFor(id) {
    return this.read()[id] || id;
  }

  forget() {
    localStorage.removeItem(this.key);
  }
}

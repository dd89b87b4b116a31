// The console's one script: a running send's progress, live, from its server-sent events (no polling here:
// the server reads the counts and sends an event when they change). Everything is set as text, never as HTML.
// Without it the pages still work: the numbers are those of the moment the page was made.
"use strict";

function follow(box) {
  const source = new EventSource(box.dataset.progress);
  const field = (name) => box.querySelector(`[data-field="${name}"]`);
  const show = (event) => {
    const progress = JSON.parse(event.data);
    const bar = box.querySelector("progress");
    bar.max = Math.max(progress.total, 1);
    bar.value = progress.done;
    bar.textContent = `${progress.percent} %`;
    field("percent").textContent = progress.percent;
    field("done").textContent = progress.done;
    field("total").textContent = progress.total;
    field("state").textContent = progress.state || "not sent";
    for (const [state, count] of Object.entries(progress.counts)) {
      const cell = box.querySelector(`[data-count="${state}"]`);
      if (cell) cell.textContent = count;
    }
  };
  source.addEventListener("progress", show);
  source.addEventListener("done", (event) => {
    show(event);
    source.close();
    box.dataset.ended = "true";
    field("ended").hidden = false;
  });
}

document.querySelectorAll("[data-progress]").forEach(follow);

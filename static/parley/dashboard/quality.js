// "Add an answer": the dialog starts from the group's question.
const dialog = document.getElementById("answer-dialog");

for (const button of document.querySelectorAll(".add-answer")) {
  button.addEventListener("click", () => {
    document.getElementById("answer-bot").value = button.dataset.bot;
    document.getElementById("answer-question").value = button.dataset.question;
    document.getElementById("answer-text").value = "";
    dialog.showModal();
    document.getElementById("answer-text").focus();
  });
}
document.getElementById("answer-cancel")?.addEventListener("click", () => dialog.close());

"""The research graph, wired in one place: objectives -> workflows -> steps.

::

    plan_objectives -> objective -> update_objectives -> (objective | propose_hypotheses)
                                                          propose_hypotheses -> validate -> judge
    objective   = plan_workflow -> step_loop -> finish_workflow
    step_loop   = choose_step -> (run_tool -> interpret -> update_workflow -> choose_step | END)

Always compiled with a checkpointer (LangGraph ``SqliteSaver`` in the run directory for real runs,
``InMemorySaver`` in tests), keyed by ``thread_id`` = run id.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from proteus.graphs import nodes
from proteus.graphs.state import ResearchState, RunContext

__all__ = ["build_step_loop", "build_objective_graph", "build_research_graph"]


def build_step_loop() -> StateGraph:
    g = StateGraph(ResearchState, context_schema=RunContext)
    g.add_node("choose_step", nodes.choose_step)
    g.add_node("run_tool", nodes.run_tool)
    g.add_node("interpret", nodes.interpret)
    g.add_node("update_workflow", nodes.update_workflow)
    g.add_edge(START, "choose_step")
    g.add_conditional_edges("choose_step", nodes.next_after_choose, {"run_tool": "run_tool", "finish": END})
    g.add_edge("run_tool", "interpret")
    g.add_edge("interpret", "update_workflow")
    g.add_edge("update_workflow", "choose_step")
    return g


def build_objective_graph() -> StateGraph:
    g = StateGraph(ResearchState, context_schema=RunContext)
    g.add_node("plan_workflow", nodes.plan_workflow)
    g.add_node("step_loop", build_step_loop().compile())
    g.add_node("finish_workflow", nodes.finish_workflow)
    g.add_edge(START, "plan_workflow")
    g.add_edge("plan_workflow", "step_loop")
    g.add_edge("step_loop", "finish_workflow")
    g.add_edge("finish_workflow", END)
    return g


def build_research_graph() -> StateGraph:
    g = StateGraph(ResearchState, context_schema=RunContext)
    g.add_node("plan_objectives", nodes.plan_objectives)
    g.add_node("objective", build_objective_graph().compile())
    g.add_node("update_objectives", nodes.update_objectives)
    g.add_node("propose_hypotheses", nodes.propose_hypotheses)
    g.add_node("judge", nodes.judge)
    g.add_node("validate", nodes.validate)
    g.add_edge(START, "plan_objectives")
    g.add_conditional_edges(
        "plan_objectives", nodes.next_after_update_objectives, {"objective": "objective", "propose_hypotheses": "propose_hypotheses"}
    )
    g.add_edge("objective", "update_objectives")
    g.add_conditional_edges(
        "update_objectives", nodes.next_after_update_objectives, {"objective": "objective", "propose_hypotheses": "propose_hypotheses"}
    )
    g.add_edge("propose_hypotheses", "validate")
    g.add_edge("validate", "judge")
    g.add_edge("judge", END)
    return g

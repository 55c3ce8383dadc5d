"""The baseline the API is measured against: a plain FastAPI + SQLAlchemy create endpoint, written the way
the FastAPI / SQLAlchemy tutorials write one (what a user might write instead of tasktide).

Consumes: env `PLAIN_DATABASE_URL` (SQLAlchemy URL; the table is created at startup).
Emits: `POST /api/{user_id}/tasks` -> 201 with the stored row (one ORM `add` + `commit` + `refresh` on a
pooled session from a `Depends` generator, a sync endpoint in the thread pool);
`GET /api/{user_id}/tasks/{id}` (`Session.get`) and `GET /api/{user_id}/tasks?priority=&sort=due_at&limit=`
(one ORM query), the same way; `GET /healthz`.
No auth, no tags table, no reminders, no outbox, no events: it is the floor, not an equivalent.

    PLAIN_DATABASE_URL=postgresql+psycopg://... .venv/bin/uvicorn --app-dir loadtests/bench \\
        plain_baseline:app --host 127.0.0.1 --port 8090
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import JSON, DateTime, Engine, String, Text, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class PlainTask(Base):
    __tablename__ = "plain_tasks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(8), default="medium")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reminders: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TaskCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    priority: str = "medium"
    tags: list[str] = []
    due_at: datetime | None = None
    reminders: list[str] = []


class TaskRead(TaskCreate):
    id: uuid.UUID
    user_id: str
    created_at: datetime


@lru_cache(maxsize=1)
def engine() -> Engine:
    built = create_engine(os.environ["PLAIN_DATABASE_URL"])
    Base.metadata.create_all(built)
    return built


@lru_cache(maxsize=1)
def sessions() -> sessionmaker[Session]:
    return sessionmaker(engine())


def get_db() -> Iterator[Session]:
    db = sessions()()
    try:
        yield db
    finally:
        db.close()


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    engine()
    yield
    engine().dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/{user_id}/tasks", status_code=201, response_model=TaskRead)
def create_task(user_id: str, body: TaskCreate, db: Annotated[Session, Depends(get_db)]) -> Any:
    row = PlainTask(user_id=user_id, created_at=datetime.now(UTC), **body.model_dump())
    db.add(row)
    db.commit()
    db.refresh(row)
    return row


@app.get("/api/{user_id}/tasks/{task_id}", response_model=TaskRead)
def get_task(user_id: str, task_id: uuid.UUID, db: Annotated[Session, Depends(get_db)]) -> Any:
    row = db.get(PlainTask, task_id)
    if row is None or row.user_id != user_id:
        raise HTTPException(404)
    return row


@app.get("/api/{user_id}/tasks", response_model=list[TaskRead])
def list_tasks(
    user_id: str,
    db: Annotated[Session, Depends(get_db)],
    priority: str | None = None,
    sort: str = "due_at",
    limit: int = 20,
) -> Any:
    query = select(PlainTask).where(PlainTask.user_id == user_id)
    if priority is not None:
        query = query.where(PlainTask.priority == priority)
    order = PlainTask.due_at if sort == "due_at" else PlainTask.created_at
    return db.scalars(query.order_by(order, PlainTask.id).limit(limit)).all()
